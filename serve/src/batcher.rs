//! Micro-batching: requests that arrive together are scored together.
//!
//! At batch 1 the scorer is bound by reading the MLP weights (2.3 MB for the Criteo-like model,
//! more than L2), so scoring five samples in one pass costs little more than scoring one. Load
//! arrives in bursts (a client's timer, a proxy flushing, many users at once), and a burst is
//! exactly when the tail grows: each request used to wait for the ones ahead of it to be scored
//! one by one. Here the async workers parse each body and queue it; a few scoring threads each
//! take everything queued for the same model version (up to `max_rows` samples), score it as one
//! batch with their own [`Scratch`], and hand each request its slice of the scores. A quiet
//! service pays one thread hand-off per request, as with `spawn_blocking`; a busy one scores a
//! burst in one pass.
//!
//! Versions are never mixed: a group only holds requests that took the same
//! `Arc<Loaded<Served>>`, so each response is still computed by exactly the version it reports.

use super::parse::{BadRequest, Samples};
use super::served::Served;
use deepfm::reload::Loaded;
use deepfm::{Columns, ScoreError, Scratch, score};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// The scores of one request, or why it was refused.
pub type Reply = Result<Vec<f32>, BadRequest>;

/// One parsed request waiting to be scored.
struct Job {
    served: Arc<Loaded<Served>>,
    samples: Samples,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    max_rows: usize,
    /// Groups scored, and the requests in them (for `/metrics`: their ratio is the mean
    /// number of requests per scoring pass).
    groups: AtomicU64,
    grouped_requests: AtomicU64,
}

impl Shared {
    /// The queue, even if a scoring thread panicked while holding it (the queue itself is
    /// always consistent: jobs are only pushed and popped whole).
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The scoring threads and their queue. Dropping it lets the threads finish the queued jobs
/// and stop.
pub struct Batcher {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("threads", &self.threads.len())
            .field("max_rows", &self.shared.max_rows)
            .finish()
    }
}

impl Batcher {
    /// Starts `threads` scoring threads (at least one) that merge queued requests into batches
    /// of at most `max_rows` samples (a single larger request is scored alone).
    pub fn start(threads: usize, max_rows: usize) -> std::io::Result<Batcher> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            max_rows: max_rows.max(1),
            groups: AtomicU64::new(0),
            grouped_requests: AtomicU64::new(0),
        });
        let threads = (0..threads.max(1))
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("scorer-{i}"))
                    .spawn(move || run(&shared))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Batcher { shared, threads })
    }

    /// Queues `samples` (parsed against `served`'s spec) for scoring by `served`; the receiver
    /// yields its scores, in order.
    pub fn submit(
        &self,
        served: Arc<Loaded<Served>>,
        samples: Samples,
    ) -> oneshot::Receiver<Reply> {
        let (reply, answer) = oneshot::channel();
        self.shared.lock().jobs.push_back(Job {
            served,
            samples,
            reply,
        });
        self.shared.ready.notify_one();
        answer
    }

    /// Scoring passes so far, and the requests they answered.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.groups.load(Relaxed),
            self.shared.grouped_requests.load(Relaxed),
        )
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A scoring thread: waits for jobs, takes a group, scores it, repeats until closed.
fn run(shared: &Shared) {
    let mut scorer = GroupScorer::default();
    let mut group = Vec::new();
    loop {
        {
            let mut queue = shared.lock();
            while queue.jobs.is_empty() {
                if queue.closed {
                    return;
                }
                queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
            take_group(&mut queue.jobs, shared.max_rows, &mut group);
            // More work than this thread took: let another one start on it now.
            if !queue.jobs.is_empty() {
                shared.ready.notify_one();
            }
        }
        shared.groups.fetch_add(1, Relaxed);
        shared
            .grouped_requests
            .fetch_add(group.len() as u64, Relaxed);
        // Scoring does not panic on any input; should a bug make it, the thread survives:
        // the group's requests get a 500 (their reply channels close) and the scorer starts
        // afresh, so the queue never waits on a dead thread.
        let scored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scorer.score(&mut group);
        }));
        if scored.is_err() {
            group.clear();
            scorer = GroupScorer::default();
        }
    }
}

/// Moves the first job, and the jobs right behind it with the same model version while they
/// fit in `max_rows` samples, from `jobs` into `group`.
fn take_group(jobs: &mut VecDeque<Job>, max_rows: usize, group: &mut Vec<Job>) {
    let Some(first) = jobs.pop_front() else {
        return;
    };
    let mut rows = first.samples.rows();
    group.push(first);
    while let Some(next) = jobs.front() {
        let same_version = Arc::ptr_eq(&next.served, &group[0].served);
        let next_rows = next.samples.rows();
        if !same_version || rows + next_rows > max_rows {
            break;
        }
        rows += next_rows;
        group.extend(jobs.pop_front());
    }
}

/// What one scoring thread keeps between groups: its scratch and the merged batch.
#[derive(Default)]
struct GroupScorer {
    scratch: Option<Scratch>,
    merged: Option<Samples>,
    scores: Vec<f32>,
}

impl GroupScorer {
    /// Scores `group` (all one model version) and answers each job; empties `group`.
    fn score(&mut self, group: &mut Vec<Job>) {
        let Some(first) = group.first() else {
            return;
        };
        let served = first.served.clone();
        let model = served.model();
        if self.scratch.as_ref().is_some_and(|s| !s.fits(model)) {
            self.scratch = None;
        }
        let scratch = self.scratch.get_or_insert_with(|| Scratch::new(model));
        let merged = if group.len() == 1 {
            None
        } else {
            let merged = self
                .merged
                .get_or_insert_with(|| Samples::empty(model.spec()));
            // A reload may have changed the fields: the buffer follows the group's layout.
            if !merged.same_layout(&first.samples) {
                *merged = Samples::empty(model.spec());
            }
            merged.clear();
            // Every job of the group was parsed against the same spec, so this always holds.
            group
                .iter()
                .all(|job| merged.append(&job.samples))
                .then_some(&*merged)
        };
        let together = merged.and_then(|batch| {
            self.scores.clear();
            self.scores.resize(batch.rows(), 0.0);
            score(model, batch, scratch, &mut self.scores).ok()
        });
        match together {
            Some(()) => {
                let mut start = 0;
                for job in group.drain(..) {
                    let end = start + job.samples.rows();
                    let _ = job.reply.send(Ok(self.scores[start..end].to_vec()));
                    start = end;
                }
            }
            // One request alone, or a merged batch with a bad sample somewhere: score each
            // request by itself, so an error names the request's own sample.
            None => {
                for job in group.drain(..) {
                    let mut scores = vec![0.0; job.samples.rows()];
                    let reply = score(model, &job.samples, scratch, &mut scores)
                        .map(|()| scores)
                        .map_err(|e| score_problem(&e));
                    let _ = job.reply.send(reply);
                }
            }
        }
    }
}

/// A scoring error as a 400 (the parser already checked ids and values; what is left is an
/// overflow inside the model on extreme numeric values).
pub fn score_problem(e: &ScoreError) -> BadRequest {
    match e {
        ScoreError::IdOutOfRange { field, row, .. }
        | ScoreError::NonFinite { field, row, .. }
        | ScoreError::BadOffsets { field, row } => BadRequest::at(e.to_string(), field, Some(*row)),
        ScoreError::NonFiniteScore { row } => BadRequest {
            error: e.to_string(),
            field: None,
            sample: Some(*row),
        },
        _ => BadRequest::new(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_samples;
    use deepfm::fixtures::{mixed_small, write_random_model};
    use deepfm::reload::Reloadable;

    fn body(rows: &[(u64, f32, &[u64])]) -> String {
        let samples: Vec<String> = rows
            .iter()
            .map(|(user, age, genres)| {
                format!(
                    r#"{{"user": {user}, "age": {age:e}, "genres": {genres:?}, "tags": [1, 2]}}"#
                )
            })
            .collect();
        format!(r#"{{"samples": [{}]}}"#, samples.join(", "))
    }

    /// A merged group answers each request with exactly the scores it gets alone, and a bad
    /// sample fails only its own request, naming its own sample.
    #[test]
    fn a_merged_group_answers_each_request_as_if_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.dfm");
        write_random_model(&path, &mixed_small(), 3).unwrap();
        let handle = Reloadable::<Served>::open(&path).unwrap();
        let served = handle.current();
        let spec = served.model().spec().clone();
        let bodies = [
            body(&[(1, 0.5, &[1, 2])]),
            body(&[(2, -1.0, &[]), (3, 2.0, &[4, 5, 6]), (499, 0.0, &[17])]),
            body(&[(4, 1.0, &[0]), (5, 3e38, &[1, 2, 3])]),
            body(&[(6, 0.25, &[3])]),
        ];
        let parse = |b: &str| parse_samples(b.as_bytes(), &spec, 100).unwrap();
        let mut alone = Vec::new();
        let mut scratch = Scratch::new(served.model());
        for b in &bodies {
            let samples = parse(b);
            let mut scores = vec![0.0; samples.rows()];
            alone.push(score(served.model(), &samples, &mut scratch, &mut scores).map(|()| scores));
        }
        assert!(
            matches!(alone[2], Err(ScoreError::NonFiniteScore { row: 1 })),
            "the third request must overflow for this test to mean anything: {:?}",
            alone[2]
        );
        let mut scorer = GroupScorer::default();
        // Twice: the second time reuses the scratch and the merged buffer.
        for _ in 0..2 {
            let (mut group, answers): (Vec<Job>, Vec<_>) = bodies
                .iter()
                .map(|b| {
                    let (reply, answer) = oneshot::channel();
                    let job = Job {
                        served: served.clone(),
                        samples: parse(b),
                        reply,
                    };
                    (job, answer)
                })
                .unzip();
            scorer.score(&mut group);
            assert!(group.is_empty());
            for (i, answer) in answers.into_iter().enumerate() {
                let got = answer.blocking_recv().unwrap();
                match (&alone[i], got) {
                    (Ok(want), Ok(got)) => assert_eq!(&got, want, "request {i}"),
                    (Err(_), Err(problem)) => assert_eq!(problem.sample, Some(1), "request {i}"),
                    (want, got) => panic!("request {i}: alone {want:?}, merged {got:?}"),
                }
            }
        }
    }

    /// Groups never mix model versions, and stop at `max_rows`.
    #[test]
    fn groups_hold_one_version_and_at_most_max_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.dfm");
        write_random_model(&path, &mixed_small(), 3).unwrap();
        let handle = Reloadable::<Served>::open(&path).unwrap();
        let first = handle.current();
        handle.reload(&path).unwrap();
        let second = handle.current();
        let spec = first.model().spec().clone();
        let job = |served: &Arc<Loaded<Served>>, rows: usize| {
            let text = body(&vec![(1, 0.5, &[1u64][..]); rows]);
            Job {
                served: served.clone(),
                samples: parse_samples(text.as_bytes(), &spec, 100).unwrap(),
                reply: oneshot::channel().0,
            }
        };
        let mut jobs: VecDeque<Job> = [
            job(&first, 1),
            job(&first, 2),
            job(&second, 1),
            job(&second, 3),
            job(&second, 1),
        ]
        .into();
        let mut group = Vec::new();
        let mut sizes = Vec::new();
        while !jobs.is_empty() {
            take_group(&mut jobs, 4, &mut group);
            let version = group[0].served.version();
            assert!(group.iter().all(|j| j.served.version() == version));
            sizes.push(group.iter().map(|j| j.samples.rows()).collect::<Vec<_>>());
            group.clear();
        }
        assert_eq!(sizes, [vec![1, 2], vec![1, 3], vec![1]]);
    }
}
