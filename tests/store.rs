//! The Redis steps themselves, called through the library against a real
//! redis-server: what happens when a reply is lost and a step is retried.

mod common;

use common::*;
use resque_fork::identity::Identity;
use resque_fork::store::{Outcome, QueueSet, Reserved, RetryWrite, Store};
use resque_fork::Keys;

/// Worker `h:1:q`, as the process holding `token`.
fn me(token: &str) -> Identity {
    Identity {
        id: "h:1:q".into(),
        name: "h:1".into(),
        hostname: "h".into(),
        token: token.into(),
    }
}

fn store(redis: &RedisServer) -> Store {
    Store::connect(&redis.url(), Keys::default()).unwrap()
}

/// Reserves from queue `q` as worker `h:1:q`.
fn reserve(s: &mut Store) -> Reserved {
    s.reserve(
        &me("t1"),
        &QueueSet::new(&Keys::default(), vec!["q".to_string()]),
        "2024-01-15T10:30:00Z",
        1,
        true,
    )
    .unwrap()
}

#[test]
fn a_retried_reserve_resumes_the_held_job_instead_of_taking_another() {
    let redis = RedisServer::start();
    redis.push("q", r#"{"class":"A","args":[1]}"#);
    redis.push("q", r#"{"class":"B","args":[2]}"#);
    let mut s = store(&redis);
    let queues = QueueSet::new(s.keys(), vec!["q".to_string()]);
    let first = s
        .reserve(&me("t1"), &queues, "2024-01-15T10:30:00Z", 1, true)
        .unwrap();
    let Reserved::Job {
        in_flight, payload, ..
    } = first
    else {
        panic!("{first:?}")
    };
    assert_eq!(payload, br#"{"class":"A","args":[1]}"#);
    // As if the reply had been lost: the same worker reserves again.
    let again = s
        .reserve(&me("t1"), &queues, "2024-01-15T10:31:00Z", 2, true)
        .unwrap();
    assert_eq!(
        again,
        Reserved::Held {
            in_flight: in_flight.clone()
        }
    );
    assert_eq!(redis.llen("resque:queue:q"), 1, "B is still queued");
    // Another process with the same id (a restarted container, a twin in
    // another PID namespace) is never handed that job, nor a new one.
    let other = s
        .reserve(&me("t2"), &queues, "2024-01-15T10:32:00Z", 3, true)
        .unwrap();
    assert_eq!(
        other,
        Reserved::HeldByAnother {
            in_flight: in_flight.clone()
        }
    );
    assert_eq!(redis.llen("resque:queue:q"), 1, "B is still queued");
    assert_eq!(
        redis.get("resque:worker:h:1:q").unwrap().as_bytes(),
        &in_flight[..]
    );
    assert!(String::from_utf8(in_flight)
        .unwrap()
        .ends_with(r#","worker":"h:1","token":"t1"}"#));
}

/// The outcome of worker h:1:q's failed job, with a retry or without.
fn failed<'a>(in_flight: &'a [u8], retry: Option<RetryWrite<'a>>) -> Outcome<'a> {
    Outcome {
        worker_id: "h:1:q",
        in_flight,
        in_flight_started: None,
        failure_record: Some(r#"{"failed_at":"x"}"#),
        status_key: None,
        pid_key: None,
        now: 1,
        retry,
        figures: None,
    }
}

/// A completed job's outcome, as worker h:1:q records it.
fn completed(in_flight: &[u8]) -> Outcome<'_> {
    Outcome {
        failure_record: None,
        ..failed(in_flight, None)
    }
}

#[test]
fn a_retried_record_counts_once() {
    let redis = RedisServer::start();
    redis.push("q", r#"{"class":"A","args":[]}"#);
    let mut s = store(&redis);
    let Reserved::Job { in_flight, .. } = reserve(&mut s) else {
        panic!()
    };
    let outcome = failed(&in_flight, None);
    assert!(s.record(&outcome).unwrap());
    assert!(!s.record(&outcome).unwrap(), "a retry is recognised");
    assert_eq!(redis.int("resque:stat:processed"), 1);
    assert_eq!(redis.int("resque:stat:failed"), 1);
    assert_eq!(redis.llen("resque:failed"), 1);
    assert!(redis.get("resque:worker:h:1:q").is_none());
}

#[test]
fn a_retry_is_recorded_in_one_step_or_filed_when_the_delayed_keys_are_unusable() {
    let redis = RedisServer::start();
    let mut s = store(&redis);
    let item = r#"{"class":"A","args":[],"retry_count":1,"error":"E: x","queue":"q"}"#;
    for broken in [false, true] {
        if broken {
            let _: () = redis::cmd("SET")
                .arg("resque:delayed_queue_schedule")
                .arg("not a zset")
                .query(&mut redis.conn())
                .unwrap();
        }
        redis.push("q", r#"{"class":"A","args":[]}"#);
        let Reserved::Job { in_flight, .. } = reserve(&mut s) else {
            panic!()
        };
        let outcome = failed(
            &in_flight,
            Some(RetryWrite {
                item: Some(item),
                delay: 30,
                counter: "resque:resque-fork:retry:abc",
                count: 1,
                ttl: 60,
            }),
        );
        assert!(s.record(&outcome).unwrap());
        assert_eq!(redis.get("resque:worker:h:1:q"), None);
        // Kept with a retry; gone when the job is filed instead.
        let counter = redis.get("resque:resque-fork:retry:abc");
        assert_eq!(counter.as_deref(), (!broken).then_some("1"));
    }
    // The first: a delayed item due in 30 s by Redis's clock, no record.
    let stamps: Vec<String> = redis::cmd("KEYS")
        .arg("resque:delayed:*")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(stamps.len(), 1);
    assert_eq!(redis.list(&stamps[0]), [item]);
    // The second (schedule of the wrong type): filed, never lost.
    assert_eq!(redis.llen("resque:failed"), 1);
    assert_eq!(redis.int("resque:stat:failed"), 2);
    assert_eq!(redis.int("resque:stat:processed"), 2);
}

#[test]
fn a_malformed_payload_is_stored_as_valid_json_in_flight() {
    let redis = RedisServer::start();
    redis.push("q", "not json \"/ at all");
    let mut s = store(&redis);
    let reserved = reserve(&mut s);
    let Reserved::Job {
        in_flight, payload, ..
    } = reserved
    else {
        panic!()
    };
    assert_eq!(payload, b"not json \"/ at all");
    let record: serde_json::Value = serde_json::from_slice(&in_flight).unwrap();
    assert_eq!(record["payload"]["raw"], "not json \"/ at all");
    assert_eq!(record["worker"], "h:1");
}

#[test]
fn worker_id_is_strict_json_whatever_the_payload() {
    let redis = RedisServer::start();
    let mut s = store(&redis);
    // (payload, how it must sit in worker:ID)
    let cases: &[(&[u8], &str)] = &[
        (
            br#"{"class":"A","args":[1,-2.5e+3,0,0.0,1E5,"\u00e9\"\\\/\b\f\n\r\t",true,false,null,{},[]]}"#,
            "as is",
        ),
        (
            "{\n  \"class\" : \"A\",\t\"args\": [ \"caf\u{e9}\", \"\u{1F600}\", \"\\\\u0041\" ]\r\n}"
                .as_bytes(),
            "as is",
        ),
        // The bytes at the edges of printable ASCII, which the common path
        // takes without looking for escapes or UTF-8.
        (br#"{"class":"A","args":["] ~[!#-", 0, -1e-7]}"#, "as is"),
        (b"{\"class\":\"A\",\"args\":[\"del\x7f\"]}", "as is"),
        (br#"{"class":"A","args":[0x1F]}"#, "raw"),
        (br#"{"class":"A","args":[NaN]}"#, "raw"),
        (br#"{"class":"A","args":[-Infinity]}"#, "raw"),
        (br#"{"class":"A","args":[007]}"#, "raw"),
        (br#"{"class":"A","args":[1.]}"#, "raw"),
        (br#"{"class":"A","args":[.5]}"#, "raw"),
        (b"{\"class\":\"A\",\"args\":[\"tab\there\"]}", "raw"),
        (b"{\"class\":\"A\",\"args\":[\"nul\0\"]}", "raw"),
        (b"{\"class\":\"A\",\"args\":[\"\xff\"]}", "raw_base64"),
        (b"{\"class\":\"A\",\"args\":[\"\xed\xa0\x80\"]}", "raw_base64"),
        (b"{\"class\":\"A\",\"args\":[\"\xc0\xaf\"]}", "raw_base64"),
        (b"{\"class\":\"A\",\"args\":[\"\xe2\x82\"]}", "raw_base64"),
        (b"\xff not even json", "raw_base64"),
    ];
    for (payload, expected) in cases {
        let shown = String::from_utf8_lossy(payload);
        let _: () = redis::cmd("RPUSH")
            .arg("resque:queue:q")
            .arg(*payload)
            .query(&mut redis.conn())
            .unwrap();
        let Reserved::Job {
            payload: popped,
            in_flight,
            ..
        } = reserve(&mut s)
        else {
            panic!("{shown}")
        };
        assert_eq!(&popped, payload, "the worker gets the exact bytes");
        let record: serde_json::Value = serde_json::from_slice(&in_flight)
            .unwrap_or_else(|e| panic!("worker:ID for {shown:?} is not strict JSON: {e}"));
        match *expected {
            "as is" => assert!(
                in_flight.windows(payload.len()).any(|w| w == *payload),
                "{shown:?} was not kept byte for byte"
            ),
            "raw" => assert_eq!(
                record["payload"]["raw"].as_str().map(str::as_bytes),
                Some(*payload),
                "{shown:?}"
            ),
            _ => assert_eq!(
                record["payload"]["raw_base64"],
                resque_fork::payload::base64(payload),
                "{shown:?}"
            ),
        }
        let _: () = redis::cmd("DEL")
            .arg("resque:worker:h:1:q")
            .query(&mut redis.conn())
            .unwrap();
    }
}

#[test]
fn a_metrics_hash_of_the_wrong_type_never_stops_a_record() {
    let redis = RedisServer::start();
    let _: () = redis::cmd("SET")
        .arg("resque:resque-fork:metrics")
        .arg("not a hash")
        .query(&mut redis.conn())
        .unwrap();
    redis.push("q", r#"{"class":"A","args":[]}"#);
    let mut s = store(&redis);
    let Reserved::Job { in_flight, .. } = reserve(&mut s) else {
        panic!()
    };
    let figures = resque_fork::metrics::FieldCache::default().figures(
        "q",
        "A",
        resque_fork::metrics::JobOutcome::Failed,
        std::time::Duration::from_millis(5),
        Some(0.5),
    );
    let outcome = Outcome {
        figures: Some(&figures),
        ..failed(&in_flight, None)
    };
    assert!(s.record(&outcome).unwrap());
    assert_eq!(redis.int("resque:stat:processed"), 1);
    assert_eq!(redis.llen("resque:failed"), 1);
    assert_eq!(
        redis.get("resque:resque-fork:metrics").as_deref(),
        Some("not a hash")
    );
}

#[test]
fn taking_a_delayed_item_that_a_promoter_took_meanwhile_counts_nothing() {
    let redis = RedisServer::start();
    let mut s = store(&redis);
    let item = r#"{"class":"A","args":[],"queue":"q"}"#;
    s.schedule_delayed(1000, item, None).unwrap();
    let gone = r#"{"class":"A","args":[1],"queue":"q"}"#;
    let taken = s
        .take_delayed(
            "q",
            &[
                (1000, gone.as_bytes().to_vec()),
                (1000, item.as_bytes().to_vec()),
            ],
            true,
        )
        .unwrap();
    assert_eq!(taken, 1);
    assert_eq!(redis.list("resque:queue:q"), [r#"{"class":"A","args":[]}"#]);
    assert!(redis
        .keys()
        .iter()
        .all(|k| !k.contains("delayed") && !k.contains("timestamps:")));
}

/// Jobs A and B on queue `q`, A reserved by worker h:1:q: the server, the
/// store, the queue list and A's in-flight record.
fn a_reserved_and_b_queued() -> (RedisServer, Store, QueueSet, Vec<u8>) {
    let redis = RedisServer::start();
    redis.push("q", r#"{"class":"A","args":[1]}"#);
    redis.push("q", r#"{"class":"B","args":[2]}"#);
    let mut s = store(&redis);
    let queues = QueueSet::new(s.keys(), vec!["q".to_string()]);
    let Reserved::Job { in_flight, .. } = reserve(&mut s) else {
        panic!()
    };
    (redis, s, queues, in_flight)
}

#[test]
fn one_step_records_a_job_and_reserves_the_next_and_a_retry_of_it_counts_once() {
    let (redis, mut s, queues, in_flight) = a_reserved_and_b_queued();
    let outcome = failed(&in_flight, None);
    let (recorded, next) = s
        .record_and_reserve(&outcome, &me("t1"), &queues, "2024-01-15T10:31:00Z", 2)
        .unwrap();
    assert!(recorded);
    let Reserved::Job {
        payload,
        in_flight: next_in_flight,
        ..
    } = next
    else {
        panic!("{next:?}")
    };
    assert_eq!(payload, br#"{"class":"B","args":[2]}"#);
    assert_eq!(redis.int("resque:stat:processed"), 1);
    assert_eq!(redis.int("resque:stat:failed"), 1);
    assert_eq!(redis.llen("resque:failed"), 1);
    assert_eq!(
        redis.get("resque:worker:h:1:q").unwrap().as_bytes(),
        &next_in_flight[..]
    );

    // As if that reply had been lost: the worker records A again on its
    // own (nothing counted twice), and its next reserve resumes B.
    assert!(!s.record(&outcome).unwrap());
    assert_eq!(
        reserve(&mut s),
        Reserved::Held {
            in_flight: next_in_flight.clone()
        }
    );
    assert_eq!(redis.int("resque:stat:processed"), 1);

    // The last job: recorded, and nothing left to reserve.
    let done = completed(&next_in_flight);
    let (recorded, next) = s
        .record_and_reserve(&done, &me("t1"), &queues, "2024-01-15T10:32:00Z", 3)
        .unwrap();
    assert!(recorded);
    assert_eq!(next, Reserved::Empty);
    assert!(redis.get("resque:worker:h:1:q").is_none());
    assert_eq!(redis.int("resque:stat:processed"), 2);
    assert_eq!(redis.int("resque:stat:failed"), 1);
}

#[test]
fn a_record_that_cannot_be_filed_reserves_nothing() {
    let (redis, mut s, queues, in_flight) = a_reserved_and_b_queued();
    let _: () = redis::cmd("SET")
        .arg("resque:failed")
        .arg("not a list")
        .query(&mut redis.conn())
        .unwrap();
    let err = s
        .record_and_reserve(
            &failed(&in_flight, None),
            &me("t1"),
            &queues,
            "2024-01-15T10:31:00Z",
            2,
        )
        .unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    assert_eq!(redis.llen("resque:queue:q"), 1, "B is still queued");
    assert_eq!(
        redis.get("resque:worker:h:1:q").unwrap().as_bytes(),
        &in_flight[..],
        "A is still held"
    );
    assert_eq!(redis.int("resque:stat:processed"), 0);
}

/// The reserve step says whether the job has a php status record, so the
/// record step looks for one only where there is one.
#[test]
fn the_reserve_step_says_whether_the_job_has_a_status_record() {
    let redis = RedisServer::start();
    redis.push("q", r#"{"class":"A","args":[],"id":"plain"}"#);
    redis.push("q", r#"{"class":"A","args":[],"id":"tracked"}"#);
    redis.push("q", r#"{"class":"A","args":[]}"#);
    let _: () = redis::cmd("SET")
        .arg("resque:job:tracked:status")
        .arg(r#"{"status":1,"updated":1,"started":1,"result":null}"#)
        .query(&mut redis.conn())
        .unwrap();
    let mut s = store(&redis);
    let mut tracked = Vec::new();
    for _ in 0..3 {
        let Reserved::Job { status_tracked, .. } = reserve(&mut s) else {
            panic!("no job")
        };
        tracked.push(status_tracked);
        // (As if recorded: the next reserve takes the next job.)
        let _: () = redis::cmd("DEL")
            .arg("resque:worker:h:1:q")
            .query(&mut redis.conn())
            .unwrap();
    }
    assert_eq!(tracked, [false, true, false]);
}

/// The record step accepts `worker:ID` in either form, as reserved or as
/// the started note rewrote it, and nothing else: not even an empty string,
/// which is what the step is given for the started form when no note was
/// sent.
#[test]
fn the_record_step_accepts_the_started_form_only_when_a_note_was_sent() {
    let redis = RedisServer::start();
    redis.push("q", r#"{"class":"A","args":[],"id":"j1"}"#);
    redis.push("q", r#"{"class":"A","args":[],"id":"j2"}"#);
    let mut s = store(&redis);
    let Reserved::Job { in_flight, .. } = reserve(&mut s) else {
        panic!()
    };
    let started = resque_fork::payload::with_pgid(&in_flight, 4242).unwrap();
    s.job_started("h:1:q", &in_flight, &started, Some("j1"), 4242)
        .unwrap();
    let outcome = Outcome {
        in_flight_started: Some(&started),
        pid_key: Some(("resque:job:j1:pid", 4242)),
        ..completed(&in_flight)
    };
    assert!(s.record(&outcome).unwrap());
    assert_eq!(redis.int("resque:stat:processed"), 1);
    assert!(redis.get("resque:job:j1:pid").is_none());

    // Someone else emptied worker:ID: not our job any more.
    let Reserved::Job { in_flight, .. } = reserve(&mut s) else {
        panic!()
    };
    let _: () = redis::cmd("SET")
        .arg("resque:worker:h:1:q")
        .arg("")
        .query(&mut redis.conn())
        .unwrap();
    let outcome = completed(&in_flight);
    assert!(!s.record(&outcome).unwrap());
    assert_eq!(redis.int("resque:stat:processed"), 1);
}

/// Over a long list of queues the chained step splits its keys element by
/// element (past 4,000) or with unpack (below): either way the next job
/// comes from the first queue in order that holds one.
#[test]
fn one_step_over_thousands_of_queues_takes_from_the_first_that_holds_a_job() {
    for n in [3_000, 4_500] {
        let redis = RedisServer::start();
        let names: Vec<String> = (0..n).map(|i| format!("t{i:05}")).collect();
        redis.push(&names[n - 1], r#"{"class":"Last","args":[]}"#);
        redis.push(&names[n / 2], r#"{"class":"Middle","args":[1]}"#);
        redis.push(&names[n / 2], r#"{"class":"Middle","args":[2]}"#);
        let mut s = store(&redis);
        let queues = QueueSet::new(s.keys(), names);
        let mut taken = Vec::new();
        let mut next = s
            .reserve(&me("t1"), &queues, "2024-01-15T10:30:00Z", 1, true)
            .unwrap();
        while let Reserved::Job {
            payload, in_flight, ..
        } = next
        {
            taken.push(String::from_utf8(payload).unwrap());
            let done = completed(&in_flight);
            let (recorded, reserved) = s
                .record_and_reserve(&done, &me("t1"), &queues, "2024-01-15T10:31:00Z", 2)
                .unwrap();
            assert!(recorded, "{n} queues");
            next = reserved;
        }
        assert_eq!(next, Reserved::Empty, "{n} queues");
        assert_eq!(
            taken,
            [
                r#"{"class":"Middle","args":[1]}"#,
                r#"{"class":"Middle","args":[2]}"#,
                r#"{"class":"Last","args":[]}"#
            ],
            "{n} queues"
        );
        assert_eq!(redis.int("resque:stat:processed"), 3);
    }
}
