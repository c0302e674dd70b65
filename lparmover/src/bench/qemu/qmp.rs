//! A QMP client: QEMU's JSON machine protocol over its UNIX socket, one command at a time.
//!
//! QMP sends a greeting, then answers each `{"execute": …}` with `{"return": …}` or
//! `{"error": {"class", "desc"}}`; asynchronous `{"event": …}` lines may arrive in between and
//! are skipped. Messages are one JSON object per line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A failed QMP exchange.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket did not appear or could not be used.
    #[error("QMP socket {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// QEMU answered with an error.
    #[error("QMP {command}: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    /// QEMU said something that is not QMP.
    #[error("QMP {command}: unexpected answer {answer}")]
    Protocol { command: String, answer: String },
}

/// One QMP connection.
pub struct Qmp {
    path: String,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to the socket at `path` (retrying until `timeout`: QEMU creates it at start-up),
    /// reads the greeting and leaves capabilities negotiation mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let shown = path.display().to_string();
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(QmpError::Io {
                        path: shown,
                        source: e,
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let io = |source| QmpError::Io {
            path: shown.clone(),
            source,
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut qmp = Self {
            path: shown.clone(),
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message("greeting")?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol {
                command: "greeting".into(),
                answer: greeting.to_string(),
            });
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read_message(&mut self, command: &str) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Err(QmpError::Io {
                path: self.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "QEMU closed its QMP socket (did it exit? see its log)",
                ),
            });
        }
        serde_json::from_str(&line).map_err(|_| QmpError::Protocol {
            command: command.into(),
            answer: line.trim().to_owned(),
        })
    }

    /// Runs `command` with `arguments` and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        let mut request = json!({ "execute": command });
        if arguments.as_object().is_some_and(|o| !o.is_empty()) {
            request["arguments"] = arguments;
        }
        let mut text = request.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                source,
            })?;
        loop {
            let message = self.read_message(command)?;
            if message.get("event").is_some() {
                continue;
            }
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                let field = |k: &str| {
                    error
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned()
                };
                return Err(QmpError::Command {
                    command: command.into(),
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            return Err(QmpError::Protocol {
                command: command.into(),
                answer: message.to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake QEMU that greets, accepts capabilities, emits an event, then answers or refuses.
    #[test]
    fn commands_skip_events_and_report_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut out = stream.try_clone().expect("clone");
            let mut lines = BufReader::new(stream).lines();
            writeln!(out, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).expect("w");
            let caps = lines.next().expect("line").expect("read");
            assert!(caps.contains("qmp_capabilities"), "{caps}");
            writeln!(out, r#"{{"return": {{}}}}"#).expect("w");
            let q = lines.next().expect("line").expect("read");
            assert!(q.contains("query-migrate"), "{q}");
            writeln!(
                out,
                r#"{{"event": "MIGRATION", "data": {{"status": "active"}}}}"#
            )
            .expect("w");
            writeln!(
                out,
                r#"{{"return": {{"status": "completed", "downtime": 42}}}}"#
            )
            .expect("w");
            let _ = lines.next();
            writeln!(
                out,
                r#"{{"error": {{"class": "GenericError", "desc": "Parameter 'x' is unexpected"}}}}"#
            )
            .expect("w");
        });
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).expect("connect");
        let status = qmp.execute("query-migrate", json!({})).expect("query");
        assert_eq!(status["downtime"], 42);
        let err = qmp
            .execute("migrate-set-parameters", json!({ "x": 1 }))
            .expect_err("refused");
        assert!(
            err.to_string().contains("Parameter 'x' is unexpected"),
            "{err}"
        );
        server.join().expect("server");
    }
}
