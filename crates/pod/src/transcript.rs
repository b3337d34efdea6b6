//! A session log as a transcript: `pod_client::transcript`, re-exported.
