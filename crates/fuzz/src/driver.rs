//! The driver: runs a target's seeds and their mutants under guards, and
//! reports what broke.
//!
//! Each input runs inside `catch_unwind` on a worker thread, so a panic is a
//! finding and the run goes on. A supervisor (the calling thread) watches the
//! worker: an input still running after the per-input budget is reported as a
//! hang, and the process growing past the memory limit as a memory failure,
//! with the input in flight; the worker is then abandoned (a thread cannot be
//! killed), which is why each run has its own worker.
//!
//! Without coverage feedback, the corpus grows by a cheaper signal: an input
//! whose [`Feedback`] (coarse features of what the target did with it, such
//! as which kind of error it gave) includes one not seen before joins the
//! corpus, so mutants that reach a new path become parents of further mutants.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::FuzzError;
use crate::mutate::mutate;
use crate::panic_capture;
use crate::rng::{Rng, fnv1a};

/// How the target under test is driven: its seeds, its check, its own mutations.
///
/// A harness is built on the worker thread and used for one run. `check` must
/// start every input from scratch (fresh directories, fresh readers), since a
/// panic may leave whatever it was doing half done.
pub trait Harness {
    /// The real inputs (recorded streams, documented examples, valid logs) that
    /// fuzzing starts from; each must pass `check` unchanged.
    fn seeds(&mut self) -> Result<Vec<Vec<u8>>, FuzzError>;

    /// Runs one input. Panics when an invariant is broken (that is the
    /// finding); returns `Err` only when the environment fails (a temp file
    /// cannot be written), which ends the run.
    fn check(&mut self, input: &[u8]) -> Result<Feedback, FuzzError>;

    /// A mutation that knows the input's structure (lines of a session's
    /// files, ...); `false` when the harness has none, and the generic byte
    /// mutations are used instead.
    fn mutate(&mut self, _rng: &mut Rng, _input: &mut Vec<u8>) -> bool {
        false
    }

    /// The longest input worth trying.
    fn max_len(&self) -> usize {
        256 * 1024
    }
}

/// A named fuzz target: what the `pod-fuzz` binary and the tests run.
#[derive(Clone, Copy)]
pub struct Target {
    /// The name on the command line and of its regression directory.
    pub name: &'static str,
    /// One line on what it feeds to which code, and what it checks.
    pub about: &'static str,
    /// Builds a fresh harness (on the worker thread).
    pub build: fn() -> Result<Box<dyn Harness>, FuzzError>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target").field("name", &self.name).finish()
    }
}

/// A coarse summary of what a target did with an input: a few features
/// (which error, which kinds of item); an input showing a feature not seen
/// before in the run joins the corpus.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Feedback {
    features: Vec<u64>,
}

impl Feedback {
    /// The feature of an outcome described by `text` (an error message, a
    /// variant name): its first 60 characters before any quote (backtick or
    /// double quote), digits left out. Messages repeat names, values and
    /// positions from the input, which must not make every input look new.
    pub fn of(text: &str) -> Self {
        let end = text.find(['`', '"']).unwrap_or(text.len());
        let kept: String = text[..end]
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .take(60)
            .collect();
        Feedback {
            features: vec![fnv1a(kept.as_bytes())],
        }
    }

    /// The features of both.
    pub fn and(mut self, other: Feedback) -> Self {
        self.features.extend(other.features);
        self
    }

    /// The features, as hashes.
    pub fn features(&self) -> &[u64] {
        &self.features
    }
}

/// How long a run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// This many inputs, seeds included: the same inputs on every machine (tests).
    Inputs(u64),
    /// Until this much time has passed (the binary).
    Time(Duration),
}

/// What a run does and its limits.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seeds the mutations; the same seed and budget in inputs give the same inputs.
    pub seed: u64,
    /// How long to go on.
    pub budget: Budget,
    /// An input running longer than this is reported as a hang.
    pub input_timeout: Duration,
    /// The run stops after this many distinct failures.
    pub max_failures: usize,
    /// The process growing past this many bytes of resident memory is a
    /// failure of the input in flight (`None`: not watched).
    pub rss_limit: Option<u64>,
    /// A file that holds each input while it runs, so that a crash no guard
    /// survives (an abort on a failed allocation, a stack overflow) still
    /// leaves its input behind for the process that started this one.
    pub flight_recorder: Option<PathBuf>,
}

impl Config {
    /// A run with the given seed and budget, and the default limits: 10 s per
    /// input (generous for a debug build on a loaded machine), 8 distinct
    /// failures, 2 GiB resident.
    pub fn new(seed: u64, budget: Budget) -> Self {
        Config {
            seed,
            budget,
            input_timeout: Duration::from_secs(10),
            max_failures: 8,
            rss_limit: Some(2 << 30),
            flight_recorder: None,
        }
    }
}

/// What kind of failure an input caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// It panicked (a broken invariant, or a crash in the code under test).
    Panic,
    /// It ran past the per-input time budget.
    Hang,
    /// The process grew past the memory limit while it ran.
    Memory,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Panic => "panic",
            FailureKind::Hang => "hang",
            FailureKind::Memory => "memory",
        })
    }
}

/// One distinct failure: the first input that caused it, and how often it recurred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Panic, hang or memory.
    pub kind: FailureKind,
    /// The panic message, or what the watchdog measured.
    pub message: String,
    /// Where it panicked (`file:line:column`), if it did.
    pub location: Option<String>,
    /// The first input that caused it.
    pub input: Vec<u8>,
    /// How many inputs caused it.
    pub hits: u64,
}

impl Failure {
    /// What makes two failures the same: the kind and the panic location (or,
    /// without one, the message's first line).
    pub fn signature(&self) -> String {
        match &self.location {
            Some(location) => format!("{} at {location}", self.kind),
            None => format!(
                "{}: {}",
                self.kind,
                self.message.lines().next().unwrap_or_default()
            ),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(location) = &self.location {
            write!(f, " at {location}")?;
        }
        write!(
            f,
            ": {} ({} bytes, {} hit{})",
            self.message,
            self.input.len(),
            self.hits,
            if self.hits == 1 { "" } else { "s" }
        )
    }
}

/// The result of one run of one target.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// The seed the run used.
    pub seed: u64,
    /// Inputs run, seeds included.
    pub inputs: u64,
    /// Corpus size at the end: seeds plus mutants that gave new feedback.
    pub corpus: usize,
    /// How long the run took.
    pub elapsed: Duration,
    /// The slowest input that passed.
    pub slowest: Duration,
    /// Distinct failures, in the order found.
    pub failures: Vec<Failure>,
    /// The result of [`minimize`]; `None` for other runs.
    pub minimized: Option<Vec<u8>>,
}

impl Report {
    /// Inputs per second.
    pub fn rate(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Fuzzes `target`: its seeds, then mutants, until the budget is spent or
/// `config.max_failures` distinct failures are found.
pub fn fuzz(target: &Target, config: &Config) -> Result<Report, FuzzError> {
    supervise(*target, Plan::Fuzz, config)
}

/// Runs exactly `inputs` through `target` under the same guards (regression
/// replays); the budget of `config` is ignored.
pub fn replay(target: &Target, inputs: Vec<Vec<u8>>, config: &Config) -> Result<Report, FuzzError> {
    supervise(*target, Plan::Replay(inputs), config)
}

/// Shrinks the input of a panic `failure` of `target`: removes ever smaller
/// chunks while the input still panics at the same place, for at most
/// `tries` attempts. Returns the smallest input found (the original when
/// nothing could be removed, or when the failure is not a panic).
pub fn minimize(
    target: &Target,
    failure: &Failure,
    tries: u64,
    config: &Config,
) -> Result<Vec<u8>, FuzzError> {
    if failure.kind != FailureKind::Panic {
        return Ok(failure.input.clone());
    }
    let plan = Plan::Minimize {
        input: failure.input.clone(),
        signature: failure.signature(),
        tries,
    };
    let report = supervise(*target, plan, config)?;
    Ok(report.minimized.unwrap_or_else(|| failure.input.clone()))
}

/// What the worker runs.
enum Plan {
    Fuzz,
    Replay(Vec<Vec<u8>>),
    Minimize {
        input: Vec<u8>,
        signature: String,
        tries: u64,
    },
}

/// The corpus stops growing here, so a long run stays well within memory
/// (and below the memory watch): at most 1024 inputs of at most 512 KiB.
const MAX_CORPUS: usize = 1024;

/// How often the supervisor looks at the worker.
const POLL: Duration = Duration::from_millis(20);

/// The worker's stack: a main thread's 8 MiB, so deep but bounded recursion in
/// a debug build is not mistaken for a crash.
const WORKER_STACK: usize = 8 << 20;

/// What the worker and the supervisor share.
struct Shared {
    epoch: Instant,
    /// Nanoseconds since `epoch` plus one when the input in flight started; 0: none in flight.
    started: AtomicU64,
    /// Inputs finished.
    inputs: AtomicU64,
    /// The input in flight (a copy), for the supervisor to report.
    current: Mutex<Vec<u8>>,
    /// Set by the supervisor when it gives up on the worker.
    stop: AtomicBool,
}

impl Shared {
    fn in_flight_for(&self) -> Option<Duration> {
        let started = self.started.load(Ordering::Acquire);
        if started == 0 {
            return None;
        }
        let now = self.epoch.elapsed().as_nanos() as u64 + 1;
        Some(Duration::from_nanos(now.saturating_sub(started)))
    }

    fn current(&self) -> Vec<u8> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// From the worker to the supervisor.
enum Message {
    /// A failure with a signature not seen before in this run.
    Failure(Failure),
    /// The run is over.
    Done(Result<WorkerEnd, FuzzError>),
}

/// The worker's final numbers.
struct WorkerEnd {
    inputs: u64,
    corpus: usize,
    slowest: Duration,
    hits: HashMap<String, u64>,
    minimized: Option<Vec<u8>>,
}

fn supervise(target: Target, plan: Plan, config: &Config) -> Result<Report, FuzzError> {
    panic_capture::install();
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        started: AtomicU64::new(0),
        inputs: AtomicU64::new(0),
        current: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let (tx, rx) = mpsc::channel();
    let handle = {
        let shared = Arc::clone(&shared);
        let config = config.clone();
        thread::Builder::new()
            .name(format!("fuzz {}", target.name))
            .stack_size(WORKER_STACK)
            .spawn(move || {
                let result = work(target, plan, &config, &shared, &tx);
                // The supervisor may have given up on this worker already.
                let _ = tx.send(Message::Done(result));
            })
            .map_err(FuzzError::Thread)?
    };

    let start = Instant::now();
    let mut failures: Vec<Failure> = Vec::new();
    let report = |failures: Vec<Failure>, inputs, corpus, slowest, minimized| Report {
        target: target.name,
        seed: config.seed,
        inputs,
        corpus,
        elapsed: start.elapsed(),
        slowest,
        failures,
        minimized,
    };
    loop {
        match rx.recv_timeout(POLL) {
            Ok(Message::Failure(failure)) => failures.push(failure),
            Ok(Message::Done(result)) => {
                // The worker has finished: joining cannot block for long.
                let _ = handle.join();
                let end = result?;
                for failure in &mut failures {
                    if let Some(&hits) = end.hits.get(&failure.signature()) {
                        failure.hits = hits;
                    }
                }
                return Ok(report(
                    failures,
                    end.inputs,
                    end.corpus,
                    end.slowest,
                    end.minimized,
                ));
            }
            Err(RecvTimeoutError::Timeout) => {
                let Some(failure) = watchdog(&shared, config) else {
                    continue;
                };
                // Give up on the worker: it stops after the input in flight, if that ever ends.
                shared.stop.store(true, Ordering::Release);
                while let Ok(Message::Failure(f)) = rx.try_recv() {
                    failures.push(f);
                }
                let signature = failure.signature();
                if !failures.iter().any(|f| f.signature() == signature) {
                    failures.push(failure);
                }
                let inputs = shared.inputs.load(Ordering::Acquire) + 1;
                return Ok(report(failures, inputs, 0, Duration::ZERO, None));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(FuzzError::WorkerDied(target.name));
            }
        }
    }
}

/// A hang or memory failure of the input in flight, if there is one now.
fn watchdog(shared: &Shared, config: &Config) -> Option<Failure> {
    let running = shared.in_flight_for()?;
    let (kind, message) = if running > config.input_timeout {
        (
            FailureKind::Hang,
            format!(
                "still running after {:.1} s (budget {:.1} s per input)",
                running.as_secs_f64(),
                config.input_timeout.as_secs_f64()
            ),
        )
    } else {
        let limit = config.rss_limit?;
        let rss = resident_bytes()?;
        if rss <= limit {
            return None;
        }
        (
            FailureKind::Memory,
            format!(
                "the process holds {} MiB, over the limit of {} MiB",
                rss >> 20,
                limit >> 20
            ),
        )
    };
    Some(Failure {
        kind,
        message,
        location: None,
        input: shared.current(),
        hits: 1,
    })
}

/// The process's resident memory, from `/proc` (`None` where there is none).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs inputs one by one and keeps the counts.
struct Runner<'a> {
    shared: &'a Shared,
    /// The open [`Config::flight_recorder`].
    flight: Option<(File, PathBuf)>,
    tx: &'a Sender<Message>,
    config: &'a Config,
    inputs: u64,
    slowest: Duration,
    hits: HashMap<String, u64>,
}

impl Runner<'_> {
    /// Runs one input: its feedback if it passed, `None` if it failed (the
    /// failure is counted, and sent to the supervisor the first time).
    fn run(
        &mut self,
        harness: &mut dyn Harness,
        input: &[u8],
    ) -> Result<Option<Feedback>, FuzzError> {
        let failure = match self.guarded(harness, input)? {
            Ok(feedback) => return Ok(Some(feedback)),
            Err(failure) => failure,
        };
        let count = self.hits.entry(failure.signature()).or_insert(0);
        *count += 1;
        if *count == 1 {
            // The supervisor keeps it even if this worker is abandoned later.
            let _ = self.tx.send(Message::Failure(failure));
        }
        Ok(None)
    }

    /// Runs one input under the guards: where the supervisor can see it, in
    /// `catch_unwind`, timed.
    fn guarded(
        &mut self,
        harness: &mut dyn Harness,
        input: &[u8],
    ) -> Result<Result<Feedback, Failure>, FuzzError> {
        {
            let mut current = self
                .shared
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            current.clear();
            current.extend_from_slice(input);
        }
        if let Some((file, path)) = &self.flight {
            file.set_len(input.len() as u64)
                .and_then(|()| file.write_all_at(input, 0))
                .map_err(|e| FuzzError::io("write", path.clone(), e))?;
        }
        let began = Instant::now();
        let since_epoch = began.duration_since(self.shared.epoch).as_nanos() as u64 + 1;
        self.shared.started.store(since_epoch, Ordering::Release);
        let outcome = panic_capture::catch(|| harness.check(input));
        let took = began.elapsed();
        self.shared.started.store(0, Ordering::Release);
        self.shared.inputs.fetch_add(1, Ordering::AcqRel);
        self.inputs += 1;

        let (kind, message, location) = match outcome {
            Ok(Ok(feedback)) if took <= self.config.input_timeout => {
                self.slowest = self.slowest.max(took);
                return Ok(Ok(feedback));
            }
            Ok(Ok(_)) => (
                FailureKind::Hang,
                format!(
                    "took {:.1} s (budget {:.1} s per input)",
                    took.as_secs_f64(),
                    self.config.input_timeout.as_secs_f64()
                ),
                None,
            ),
            Ok(Err(error)) => return Err(error),
            Err(caught) => (FailureKind::Panic, caught.message, caught.location),
        };
        Ok(Err(Failure {
            kind,
            message,
            location,
            input: input.to_vec(),
            hits: 1,
        }))
    }

    /// Delta debugging, simplified: removes chunks of halving size while the
    /// input still fails with `signature`.
    fn minimize(
        &mut self,
        harness: &mut dyn Harness,
        mut best: Vec<u8>,
        signature: &str,
        mut tries: u64,
    ) -> Result<Vec<u8>, FuzzError> {
        let mut chunk = best.len().div_ceil(2);
        while chunk >= 1 && tries > 0 && !self.shared.stop.load(Ordering::Acquire) {
            let mut at = 0;
            let mut shrunk = false;
            while at < best.len() && tries > 0 {
                tries -= 1;
                let mut candidate = best.clone();
                candidate.drain(at..(at + chunk).min(best.len()));
                match self.guarded(harness, &candidate)? {
                    Err(failure) if failure.signature() == signature => {
                        best = candidate;
                        shrunk = true;
                    }
                    _ => at += chunk,
                }
            }
            if !shrunk {
                chunk /= 2;
            }
        }
        Ok(best)
    }

    /// Whether the run should end before the next input.
    fn over(&self, budget: Budget, start: Instant) -> bool {
        if self.shared.stop.load(Ordering::Acquire) || self.hits.len() >= self.config.max_failures {
            return true;
        }
        match budget {
            Budget::Inputs(n) => self.inputs >= n,
            Budget::Time(d) => start.elapsed() >= d,
        }
    }
}

/// The worker thread's whole run.
fn work(
    target: Target,
    plan: Plan,
    config: &Config,
    shared: &Shared,
    tx: &Sender<Message>,
) -> Result<WorkerEnd, FuzzError> {
    let start = Instant::now();
    let mut harness = (target.build)()?;
    let flight = match &config.flight_recorder {
        None => None,
        Some(path) => Some((
            File::create(path).map_err(|e| FuzzError::io("create", path.clone(), e))?,
            path.clone(),
        )),
    };
    let mut runner = Runner {
        shared,
        flight,
        tx,
        config,
        inputs: 0,
        slowest: Duration::ZERO,
        hits: HashMap::new(),
    };
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut minimized = None;
    match plan {
        Plan::Minimize {
            input,
            signature,
            tries,
        } => {
            minimized = Some(runner.minimize(harness.as_mut(), input, &signature, tries)?);
        }
        Plan::Replay(inputs) => {
            for input in &inputs {
                if shared.stop.load(Ordering::Acquire) {
                    break;
                }
                runner.run(harness.as_mut(), input)?;
            }
        }
        Plan::Fuzz => {
            let seeds = harness.seeds()?;
            if seeds.is_empty() {
                return Err(FuzzError::setup(target.name, "the harness has no seeds"));
            }
            let max_len = harness.max_len();
            let mut seen = HashSet::new();
            for seed in seeds {
                if runner.over(config.budget, start) {
                    break;
                }
                if let Some(feedback) = runner.run(harness.as_mut(), &seed)? {
                    seen.extend(feedback.features().iter().copied());
                }
                corpus.push(seed);
            }
            let mut rng = Rng::new(config.seed);
            let mut input = Vec::new();
            while !runner.over(config.budget, start) {
                let base = rng.below(corpus.len());
                input.clear();
                input.extend_from_slice(&corpus[base]);
                let structured = rng.one_in(2) && harness.mutate(&mut rng, &mut input);
                if !structured {
                    mutate(&mut rng, &mut input, &corpus, max_len);
                }
                input.truncate(max_len);
                if let Some(feedback) = runner.run(harness.as_mut(), &input)? {
                    // Not `any`: every new feature is recorded, not just the first.
                    let new = feedback
                        .features()
                        .iter()
                        .fold(false, |new, &f| seen.insert(f) | new);
                    if new && corpus.len() < MAX_CORPUS {
                        corpus.push(input.clone());
                    }
                }
            }
        }
    }
    Ok(WorkerEnd {
        inputs: runner.inputs,
        corpus: corpus.len(),
        slowest: runner.slowest,
        hits: runner.hits,
        minimized,
    })
}
