//! Putting jobs on queues, as every Resque client does: `SADD queues`,
//! `RPUSH queue:NAME`, atomically.

use super::Store;
use crate::error::Result;

impl Store {
    /// Pushes a payload to the tail of a queue and adds the queue to `queues`;
    /// with `status`, also creates php's status record. All in one `MULTI`.
    pub fn enqueue(
        &mut self,
        queue: &str,
        payload: &str,
        status: Option<(&str, &str)>,
    ) -> Result<()> {
        self.with_conn(
            || format!("enqueueing to queue {queue}"),
            |c, k, _| {
                let mut pipe = redis::pipe();
                pipe.atomic();
                if let Some((key, value)) = status {
                    pipe.set(key, value).ignore();
                }
                pipe.sadd(k.queues(), queue)
                    .ignore()
                    .rpush(k.queue(queue), payload)
                    .ignore()
                    .query::<()>(c)
            },
        )
    }

    /// Pushes many payloads to the tail of a queue, in order, a thousand per
    /// round trip (each batch one `MULTI`, with the batch's status records
    /// when `statuses` pairs a key and value with each payload). `committed`
    /// counts the payloads enqueued so far, so that after an error the
    /// caller knows which ones are in Redis.
    pub fn enqueue_many(
        &mut self,
        queue: &str,
        payloads: &[String],
        statuses: Option<&[(String, String)]>,
        committed: &mut usize,
    ) -> Result<()> {
        const BATCH: usize = 1000;
        for (n, batch) in payloads.chunks(BATCH).enumerate() {
            let status = statuses.map(|s| &s[n * BATCH..(n * BATCH + batch.len()).min(s.len())]);
            self.with_conn(
                || format!("enqueueing to queue {queue}"),
                |c, k, _| {
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    for (key, value) in status.unwrap_or_default() {
                        pipe.set(key, value).ignore();
                    }
                    pipe.sadd(k.queues(), queue)
                        .ignore()
                        .rpush(k.queue(queue), batch)
                        .ignore()
                        .query::<()>(c)
                },
            )?;
            *committed += batch.len();
        }
        Ok(())
    }
}
