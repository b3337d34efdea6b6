//! Codec tests for `protocol::stream`.

// Helpers here are test code too: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use protocol::stream::{DEFAULT_MAX_LINE_LEN, JsonLineReader, JsonLineWriter, LineError};
use protocol::{Event, Method};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWriteExt, BufReader, ReadBuf};

/// Hands out at most `chunk` bytes per read, returning `Pending` before every read.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
    ready: bool,
}

impl Trickle {
    fn new(data: impl Into<Vec<u8>>, chunk: usize) -> Self {
        Trickle {
            data: data.into(),
            pos: 0,
            chunk,
            ready: false,
        }
    }
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.ready {
            self.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = false;
        let n = self
            .chunk
            .min(self.data.len() - self.pos)
            .min(buf.remaining());
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Fails every read.
struct Broken;

impl AsyncRead for Broken {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")))
    }
}

fn line_error(err: &io::Error) -> &LineError {
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    err.get_ref()
        .and_then(|e| e.downcast_ref::<LineError>())
        .unwrap_or_else(|| panic!("not a LineError: {err:?}"))
}

async fn next_value<R>(reader: &mut JsonLineReader<R>) -> Option<Value>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    reader.next::<Value>().await.unwrap()
}

#[tokio::test]
async fn reads_lines_split_into_single_bytes() {
    let text = "{\"event\":\"text_delta\",\"data\":{\"text\":\"h\u{e9}llo \u{1f600}\"}}\n\
                {\"event\":\"ack\",\"data\":{\"seq\":1}}\r\n\
                \n\
                {\"event\":\"shutdown\"}";
    let mut reader = JsonLineReader::new(Trickle::new(text, 1));
    assert_eq!(
        reader.next::<Event>().await.unwrap(),
        Some(Event::TextDelta {
            text: "h\u{e9}llo \u{1f600}".into()
        })
    );
    assert_eq!(
        reader.next::<Event>().await.unwrap(),
        Some(Event::Ack { seq: 1 })
    );
    assert_eq!(reader.next::<Event>().await.unwrap(), Some(Event::Shutdown));
    assert_eq!(reader.next::<Event>().await.unwrap(), None);
    assert_eq!(reader.next::<Event>().await.unwrap(), None, "EOF stays EOF");
}

#[tokio::test]
async fn reads_lines_written_one_byte_at_a_time_through_a_duplex() {
    let (client, server) = tokio::io::duplex(16);
    let lines = [
        r#"{"method":"run","params":{"input":[{"kind":"text","content":"hi"}]}}"#,
        r#"{"method":"shutdown"}"#,
    ];
    let payload = format!("{}\n{}\n", lines[0], lines[1]);
    let writer = tokio::spawn(async move {
        let mut client = client;
        for byte in payload.as_bytes() {
            client.write_all(&[*byte]).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    let mut reader = JsonLineReader::new(server);
    assert!(matches!(
        reader.next::<Method>().await.unwrap(),
        Some(Method::Run { .. })
    ));
    assert_eq!(
        reader.next::<Method>().await.unwrap(),
        Some(Method::Shutdown)
    );
    writer.await.unwrap();
    assert_eq!(reader.next::<Method>().await.unwrap(), None);
}

#[tokio::test]
async fn over_long_line_is_rejected_and_the_next_line_is_read() {
    let long = format!("{{\"pad\":\"{}\"}}", "x".repeat(100_000));
    let input = format!("{long}\n{{\"n\":1}}\n{long}\r\n{{\"n\":2}}\n");
    for chunk in [usize::MAX, 7] {
        let mut reader = JsonLineReader::with_max_line_len(Trickle::new(input.clone(), chunk), 64);
        let err = reader.next::<Value>().await.unwrap_err();
        assert!(matches!(line_error(&err), LineError::TooLong { limit: 64 }));
        assert_eq!(next_value(&mut reader).await, Some(json!({"n": 1})));
        let err = reader.next::<Value>().await.unwrap_err();
        assert!(matches!(line_error(&err), LineError::TooLong { limit: 64 }));
        assert_eq!(next_value(&mut reader).await, Some(json!({"n": 2})));
        assert_eq!(next_value(&mut reader).await, None);
    }
}

#[tokio::test]
async fn limit_counts_the_line_without_its_terminator() {
    let exact = format!("\"{}\"", "a".repeat(8)); // 10 bytes
    let over = format!("\"{}\"", "a".repeat(9)); // 11 bytes
    let input = format!("{exact}\r\n{over}\n{exact}");
    let mut reader = JsonLineReader::with_max_line_len(input.as_bytes(), 10);
    assert_eq!(reader.max_line_len(), 10);
    assert_eq!(next_value(&mut reader).await, Some(json!("a".repeat(8))));
    let err = reader.next::<Value>().await.unwrap_err();
    assert!(matches!(line_error(&err), LineError::TooLong { .. }));
    assert_eq!(next_value(&mut reader).await, Some(json!("a".repeat(8))));
    assert_eq!(next_value(&mut reader).await, None);
}

#[tokio::test]
async fn over_long_final_line_at_eof_is_an_error_then_eof() {
    let input = format!("{{\"n\":1}}\n{}", "y".repeat(50_000));
    let mut reader = JsonLineReader::with_max_line_len(Trickle::new(input, 4096), 100);
    assert_eq!(next_value(&mut reader).await, Some(json!({"n": 1})));
    let err = reader.next::<Value>().await.unwrap_err();
    assert!(matches!(
        line_error(&err),
        LineError::TooLong { limit: 100 }
    ));
    assert_eq!(next_value(&mut reader).await, None);
}

#[tokio::test]
async fn invalid_utf8_line_is_an_error_for_that_line_only() {
    let mut input = b"{\"text\":\"".to_vec();
    input.extend_from_slice(&[0xff, 0xfe]);
    input.extend_from_slice(b"\"}\n{\"n\":1}\n");
    let mut reader = JsonLineReader::new(Trickle::new(input, 3));
    let err = reader.next::<Value>().await.unwrap_err();
    assert!(
        matches!(line_error(&err), LineError::InvalidUtf8(_)),
        "{err}"
    );
    assert_eq!(next_value(&mut reader).await, Some(json!({"n": 1})));
    assert_eq!(next_value(&mut reader).await, None);
}

#[tokio::test]
async fn invalid_json_line_is_an_error_for_that_line_only() {
    let input = "{\"n\":\n\
                 not json at all\n\
                 {\"event\":\"usage\"}\n\
                 {\"event\":\"ack\",\"data\":{\"seq\":9}}\n";
    let mut reader = JsonLineReader::new(input.as_bytes());
    for _ in 0..3 {
        let err = reader.next::<Event>().await.unwrap_err();
        assert!(
            matches!(line_error(&err), LineError::InvalidJson(_)),
            "{err}"
        );
    }
    assert_eq!(
        reader.next::<Event>().await.unwrap(),
        Some(Event::Ack { seq: 9 })
    );
    assert_eq!(reader.next::<Event>().await.unwrap(), None);
}

#[tokio::test]
async fn wrong_params_error_message_reaches_the_caller() {
    let input = "{\"method\":\"run\",\"params\":{\"input\":7}}\n{\"method\":\"pause\"}\n";
    let mut reader = JsonLineReader::new(input.as_bytes());
    let err = reader.next::<Method>().await.unwrap_err();
    assert!(matches!(line_error(&err), LineError::InvalidJson(_)));
    assert!(err.to_string().contains("method `run`"), "{err}");
    assert_eq!(reader.next::<Method>().await.unwrap(), Some(Method::Pause));
}

#[tokio::test]
async fn final_line_without_newline_is_returned() {
    let mut reader = JsonLineReader::new(&b"{\"n\":1}\n{\"n\":2}"[..]);
    assert_eq!(next_value(&mut reader).await, Some(json!({"n": 1})));
    assert_eq!(next_value(&mut reader).await, Some(json!({"n": 2})));
    assert_eq!(next_value(&mut reader).await, None);
}

#[tokio::test]
async fn eof_in_the_middle_of_a_line_returns_the_partial_line() {
    // The bytes before EOF are the final line: decoded if they parse, else an error for that line.
    let mut reader = JsonLineReader::new(Trickle::new(&b"{\"n\":1}\n{\"n\":"[..], 1));
    assert_eq!(next_value(&mut reader).await, Some(json!({"n": 1})));
    let err = reader.next::<Value>().await.unwrap_err();
    assert!(matches!(line_error(&err), LineError::InvalidJson(_)));
    assert_eq!(next_value(&mut reader).await, None);

    let mut reader = JsonLineReader::new(Trickle::new(&b"{\"n\":1}\n{\"method\":\"x\"}"[..], 2));
    assert_eq!(next_value(&mut reader).await, Some(json!({"n": 1})));
    assert_eq!(
        reader.next_line().await.unwrap(),
        Some(&b"{\"method\":\"x\"}"[..])
    );
    assert_eq!(reader.next_line().await.unwrap(), None);
}

#[tokio::test]
async fn blank_lines_are_skipped() {
    let input = "\n\n  \t\n{\"n\":1}\n\r\n\n   \n{\"n\":2}\n  \r\n \t ";
    for chunk in [1, 3, usize::MAX] {
        let mut reader = JsonLineReader::new(Trickle::new(input, chunk));
        assert_eq!(next_value(&mut reader).await, Some(json!({"n": 1})));
        assert_eq!(next_value(&mut reader).await, Some(json!({"n": 2})));
        assert_eq!(next_value(&mut reader).await, None);
    }
    let mut reader = JsonLineReader::new(&b""[..]);
    assert_eq!(next_value(&mut reader).await, None);
}

#[tokio::test]
async fn crlf_is_accepted_and_stripped() {
    let input = "{\"n\":1}\r\n{\"n\":2}\r\n\"tail\"\r";
    let mut reader = JsonLineReader::new(Trickle::new(input, 1));
    assert_eq!(reader.next_line().await.unwrap(), Some(&b"{\"n\":1}"[..]));
    assert_eq!(next_value(&mut reader).await, Some(json!({"n": 2})));
    assert_eq!(reader.next_line().await.unwrap(), Some(&b"\"tail\""[..]));
    assert_eq!(reader.next_line().await.unwrap(), None);
}

#[tokio::test]
async fn next_line_returns_raw_bytes_without_checking_them() {
    let mut input = b"  {\"raw\": true}  \n".to_vec();
    input.extend_from_slice(&[0xff, b'\n']);
    input.extend_from_slice(b"{\"n\":1}\n");
    let mut reader = JsonLineReader::from_buf_read(BufReader::with_capacity(4, &input[..]));
    assert_eq!(
        reader.next_line().await.unwrap(),
        Some(&b"  {\"raw\": true}  "[..])
    );
    assert_eq!(reader.next_line().await.unwrap(), Some(&[0xff][..]));
    assert_eq!(next_value(&mut reader).await, Some(json!({"n": 1})));
    assert_eq!(reader.next_line().await.unwrap(), None);
}

#[tokio::test]
async fn a_cancelled_read_loses_nothing() {
    let (mut client, server) = tokio::io::duplex(64);
    let mut reader = JsonLineReader::new(server);
    client.write_all(b"{\"method\":\"no").await.unwrap();
    let timed_out = tokio::time::timeout(Duration::from_millis(20), reader.next::<Method>()).await;
    assert!(timed_out.is_err(), "no full line yet");
    client
        .write_all(b"tify\",\"params\":{\"message\":\"m\"}}\n")
        .await
        .unwrap();
    assert_eq!(
        reader.next::<Method>().await.unwrap(),
        Some(Method::Notify {
            message: "m".into()
        })
    );

    // Cancelled while discarding an over-long line: the discard resumes.
    let (mut client, server) = tokio::io::duplex(64);
    let mut reader = JsonLineReader::with_max_line_len(server, 8);
    client.write_all(&[b'z'; 40]).await.unwrap();
    let timed_out = tokio::time::timeout(Duration::from_millis(20), reader.next::<Value>()).await;
    assert!(timed_out.is_err());
    client.write_all(b"zzzz\n[1]\n").await.unwrap();
    let err = reader.next::<Value>().await.unwrap_err();
    assert!(matches!(line_error(&err), LineError::TooLong { limit: 8 }));
    assert_eq!(next_value(&mut reader).await, Some(json!([1])));
}

#[tokio::test]
async fn read_errors_pass_through_unwrapped() {
    let mut reader = JsonLineReader::new(Broken);
    let err = reader.next::<Value>().await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert!(LineError::from_io(&err).is_none());
}

#[test]
fn default_limit_is_one_gib() {
    assert_eq!(DEFAULT_MAX_LINE_LEN, 1 << 30);
    let reader = JsonLineReader::new(&b""[..]);
    assert_eq!(reader.max_line_len(), 1 << 30);
}

#[test]
fn line_errors_say_what_went_wrong() {
    let err: io::Error = LineError::TooLong { limit: 16 }.into();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert_eq!(err.to_string(), "line longer than the limit of 16 bytes");
    assert!(matches!(
        LineError::from_io(&err),
        Some(LineError::TooLong { limit: 16 })
    ));
}

#[tokio::test]
async fn writer_writes_one_flushed_line_per_value() {
    let mut writer = JsonLineWriter::new(Vec::new());
    writer.write(&Method::Shutdown).await.unwrap();
    writer
        .write(&Event::TextDelta {
            text: "a\nb".into(),
        })
        .await
        .unwrap();
    writer.write_raw_line(b"{\"raw\":1}").await.unwrap();
    writer.write_raw_line(b"{\"raw\":2}\n").await.unwrap();
    let err = writer.write_raw_line(b"{}\n{}").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let big = json!({"pad": "p".repeat(200_000)});
    writer.write(&big).await.unwrap();
    let written = String::from_utf8(writer.into_inner()).unwrap();
    let expected = format!(
        "{{\"method\":\"shutdown\"}}\n\
         {{\"event\":\"text_delta\",\"data\":{{\"text\":\"a\\nb\"}}}}\n\
         {{\"raw\":1}}\n\
         {{\"raw\":2}}\n\
         {big}\n"
    );
    assert_eq!(written, expected);
}

#[tokio::test]
async fn writer_output_reads_back() {
    let (client, server) = tokio::io::duplex(1024);
    let events = vec![
        Event::Hello {
            protocol_version: protocol::PROTOCOL_VERSION,
            pod_name: "p".into(),
        },
        Event::Entry(json!({"kind": "user_item", "seq": 1, "text": "x".repeat(10_000)})),
        Event::Unknown {
            event: "future".into(),
        },
        Event::Shutdown,
    ];
    let to_send = events.clone();
    let writer = tokio::spawn(async move {
        let mut writer = JsonLineWriter::new(client);
        for event in &to_send {
            writer.write(event).await.unwrap();
        }
        writer.get_mut().shutdown().await.unwrap();
    });
    let mut reader = JsonLineReader::new(server);
    let mut received = Vec::new();
    while let Some(event) = reader.next::<Event>().await.unwrap() {
        received.push(event);
    }
    writer.await.unwrap();
    assert_eq!(received, events);
}

#[test]
fn futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let (stream, _other) = std::os::unix::net::UnixStream::pair().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    stream.set_nonblocking(true).unwrap();
    let stream = tokio::net::UnixStream::from_std(stream).unwrap();
    let (r, w) = stream.into_split();
    let mut reader = JsonLineReader::new(r);
    let mut writer = JsonLineWriter::new(w);
    assert_send(&reader.next::<Event>());
    assert_send(&reader.next_line());
    assert_send(&writer.write(&Method::Shutdown));
    assert_send(&writer.write_raw_line(b"{}"));
}
