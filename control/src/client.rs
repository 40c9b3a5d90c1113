//! The client side of the control protocol, for `xsw` and for tests.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::proto::{Call, Command, ErrorBody, Request, Response, VERSION};

/// Why a request got no answer, or a failure as answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached; the message says what to do.
    #[error("{0}")]
    Connect(String),
    /// The connection broke.
    #[error("talking to xswd: {0}")]
    Io(#[from] std::io::Error),
    /// The answer was not a protocol answer.
    #[error("xswd answered something that is not a protocol answer: {0}")]
    Protocol(String),
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(Box<ErrorBody>),
}

/// A connection to `xswd`.
#[derive(Debug)]
pub struct Client {
    w: UnixStream,
    r: BufReader<UnixStream>,
    next_id: u64,
}

impl Client {
    /// Connects to the daemon's socket, with an error that says what to do.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let s = UnixStream::connect(path).map_err(|e| {
            let p = path.display();
            ClientError::Connect(match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "xswd is not running: no socket at {p} (start it: xswd --config FILE, or systemctl start xswd; another socket: --socket PATH)"
                ),
                std::io::ErrorKind::PermissionDenied => format!(
                    "permission denied on {p}: run as root, or be in group xsw (usermod -aG xsw $USER)"
                ),
                std::io::ErrorKind::ConnectionRefused => format!(
                    "nothing answers on {p}: xswd stopped without removing it; start xswd again"
                ),
                _ => format!("{p}: {e}"),
            })
        })?;
        let r = BufReader::new(s.try_clone()?);
        Ok(Client {
            w: s,
            r,
            next_id: 1,
        })
    }

    /// Sends a request and waits for its typed reply.
    pub fn call<C: Call>(&mut self, req: C) -> Result<C::Reply, ClientError> {
        let v = self.call_value(req.command())?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(format!("the reply: {e}")))
    }

    /// Sends a command and waits for its answer, as JSON (tests use it to
    /// look at the wire format).
    pub fn call_value(&mut self, cmd: Command) -> Result<serde_json::Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let req = Request {
            version: VERSION,
            id: Some(id),
            cmd,
        };
        let mut line =
            serde_json::to_vec(&req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.w.write_all(&line)?;
        let resp = self.read()?;
        if resp.id.is_some() && resp.id != Some(id) {
            return Err(ClientError::Protocol(format!(
                "answer for request {:?}, expected {id}",
                resp.id
            )));
        }
        Self::result(resp)
    }

    /// Sends a raw line (tests use it for malformed requests) and returns
    /// the answer.
    pub fn raw(&mut self, line: &[u8]) -> Result<Response, ClientError> {
        self.w.write_all(line)?;
        if !line.ends_with(b"\n") {
            self.w.write_all(b"\n")?;
        }
        self.read()
    }

    fn read(&mut self) -> Result<Response, ClientError> {
        let mut buf = String::new();
        let n = self.r.read_line(&mut buf)?;
        if n == 0 {
            return Err(ClientError::Protocol("connection closed".into()));
        }
        serde_json::from_str(&buf).map_err(|e| ClientError::Protocol(format!("{e}: {buf}")))
    }

    fn result(r: Response) -> Result<serde_json::Value, ClientError> {
        match (r.ok, r.result, r.error) {
            (true, Some(v), _) => Ok(v),
            (true, None, _) => Ok(serde_json::Value::Null),
            (false, _, Some(e)) => Err(ClientError::Refused(Box::new(e))),
            (false, _, None) => Err(ClientError::Protocol("failure without an error".into())),
        }
    }
}

/// The socket path: `--socket`, else `$XSW_SOCKET`, else the default.
pub fn socket_path(arg: Option<&Path>) -> PathBuf {
    arg.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("XSW_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(crate::proto::DEFAULT_SOCKET))
}
