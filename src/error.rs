//! The error type callers act on.

use std::fmt;

/// Everything that can stop resque-fork from doing what it was asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A setting or argument is invalid (exit code 2 for the CLI).
    Config(String),
    /// Redis refused, dropped or failed a command; `action` says what we were doing.
    Redis {
        /// What was being done, e.g. `reserving a job for web1:4242:mail`.
        action: String,
        /// The client's error.
        source: redis::RedisError,
    },
    /// A system call failed; `action` says which and on what.
    Io {
        /// What was being done, e.g. `writing PIDFILE /run/resque.pid`.
        action: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// Something the user asked about does not exist (an unknown job id, say).
    NotFound(String),
    /// Another process holds what this one needs (a lock, say), or changed
    /// it meanwhile; trying again later may succeed.
    Conflict(String),
    /// A record in Redis cannot be understood (not JSON, a field missing or
    /// of the wrong kind): nothing was done with it.
    Corrupt(String),
    /// A Sentinel announced a failover of the master and it has not ended:
    /// nothing is sent until it does (a connection error for retrying).
    Failover(String),
    /// A write was made but fewer replicas than `REDIS_MIN_REPLICAS` asks
    /// for acknowledged it in time; repeating the step (it is idempotent)
    /// waits for them again.
    Unreplicated(String),
    /// `PIDFILE` names a resque-fork process that is still running.
    AlreadyRunning {
        /// The file.
        pidfile: std::path::PathBuf,
        /// The live process it names.
        pid: i32,
    },
}

impl Error {
    /// Wraps a Redis error with what was being done.
    pub fn redis(action: impl Into<String>, source: redis::RedisError) -> Error {
        Error::Redis {
            action: action.into(),
            source,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(action: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            action: action.into(),
            source,
        }
    }

    /// True when the error means the connection to Redis is gone or unusable,
    /// so reconnecting may help. That includes a server that answers but
    /// cannot serve us now: READONLY (a failover demoted it to a replica),
    /// LOADING (it is reading its data after a restart) and MASTERDOWN (a
    /// replica that lost its master): the same address, or a new connection
    /// once the failover is over, will answer again. A failover announced
    /// by the Sentinels and not yet over counts too.
    pub fn is_connection(&self) -> bool {
        use redis::{ErrorKind, ServerErrorKind};
        match self {
            Error::Failover(_) => true,
            Error::Redis { source, .. } => {
                source.is_io_error()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
                    || source.is_timeout()
                    || matches!(
                        source.kind(),
                        ErrorKind::Server(
                            ServerErrorKind::ReadOnly
                                | ServerErrorKind::BusyLoading
                                | ServerErrorKind::MasterDown
                        )
                    )
            }
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(msg) => write!(f, "{msg}"),
            Error::Redis { action, source } => write!(f, "{action}: {source}"),
            Error::Io { action, source } => write!(f, "{action}: {source}"),
            Error::NotFound(msg)
            | Error::Conflict(msg)
            | Error::Corrupt(msg)
            | Error::Failover(msg)
            | Error::Unreplicated(msg) => {
                write!(f, "{msg}")
            }
            Error::AlreadyRunning { pidfile, pid } => write!(
                f,
                "already running: PIDFILE {} belongs to the live resque-fork process {pid}",
                pidfile.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Redis { source, .. } => Some(source),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand for results carrying [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
