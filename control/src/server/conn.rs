//! The control socket and its connections: one request per line in, one
//! answer per line out.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::Server;
use crate::proto::{Code, ErrorBody, Request, Response, MAX_LINE, VERSION};

/// Most connections served at once.
const MAX_CONNECTIONS: usize = 256;

impl Server {
    /// Serves one connection: requests in, answers out, until the client
    /// closes it or `stop` is set.
    pub fn serve(&self, stream: UnixStream, stop: &AtomicBool) {
        let n = self.connections.fetch_add(1, Ordering::SeqCst);
        let _guard = Decrement(&self.connections);
        let mut out = match stream.try_clone() {
            Ok(s) => s,
            Err(_) => return,
        };
        if n >= MAX_CONNECTIONS {
            let _ = write_response(
                &mut out,
                &Response::err(
                    None,
                    ErrorBody::new(Code::Internal, "too many connections; try again"),
                ),
            );
            return;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            line.clear();
            match read_line(&mut reader, &mut line, stop) {
                Ok(LineRead::Eof) => return,
                Ok(LineRead::TooLong) => {
                    let _ = write_response(
                        &mut out,
                        &Response::err(
                            None,
                            ErrorBody::new(
                                Code::BadRequest,
                                format!("request longer than {MAX_LINE} bytes"),
                            ),
                        ),
                    );
                    return;
                }
                Ok(LineRead::Line) => {}
                Err(_) => return,
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let resp = self.answer(&line);
            if write_response(&mut out, &resp).is_err() {
                return;
            }
        }
    }

    /// The answer to one request line.
    pub fn answer(&self, line: &[u8]) -> Response {
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                return Response::err(
                    None,
                    ErrorBody::new(Code::BadRequest, format!("not JSON: {e}")),
                )
            }
        };
        // The id and command name, even from a request that does not parse
        // as a whole.
        let id = v.get("id").and_then(Value::as_u64);
        let name = v
            .get("cmd")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        match v.get("version").and_then(Value::as_u64) {
            Some(v) if v == VERSION as u64 => {}
            Some(v) => {
                return Response::err(
                    id,
                    ErrorBody::new(
                        Code::Version,
                        format!("protocol version {v}: this xswd speaks version {VERSION}"),
                    ),
                )
            }
            None => {
                return Response::err(
                    id,
                    ErrorBody::new(Code::BadRequest, "missing \"version\": 1"),
                )
            }
        }
        let req: Request = match serde_json::from_value(v) {
            Ok(r) => r,
            Err(e) => {
                return Response::err(
                    id,
                    ErrorBody::new(Code::BadRequest, format!("bad request: {e}")),
                )
            }
        };
        let mutates = req.cmd.mutates();
        match self.handle(req.cmd) {
            Ok(r) => Response::reply(req.id, &r),
            Err(e) => {
                if mutates {
                    tracing::info!("refused: {name}: {e}");
                }
                Response::err(req.id, e)
            }
        }
    }
}

struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

enum LineRead {
    Line,
    Eof,
    TooLong,
}

/// Reads one line (without its newline), waiting through read timeouts
/// until `stop` is set.
fn read_line<R: Read>(
    r: &mut BufReader<R>,
    out: &mut Vec<u8>,
    stop: &AtomicBool,
) -> std::io::Result<LineRead> {
    loop {
        let (done, used) = {
            let buf = match r.fill_buf() {
                Ok(b) => b,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(LineRead::Eof);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(if out.is_empty() {
                    LineRead::Eof
                } else {
                    LineRead::Line
                });
            }
            match buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    out.extend_from_slice(&buf[..i]);
                    (true, i + 1)
                }
                None => {
                    out.extend_from_slice(buf);
                    (false, buf.len())
                }
            }
        };
        r.consume(used);
        if out.len() > MAX_LINE {
            return Ok(LineRead::TooLong);
        }
        if done {
            return Ok(LineRead::Line);
        }
    }
}

fn write_response(w: &mut UnixStream, r: &Response) -> std::io::Result<()> {
    let mut s = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    s.push(b'\n');
    w.write_all(&s)
}

/// Creates the socket: its directory (mode 0755), the socket (mode 0660,
/// owner root, group `xsw` when that group exists). A socket file left by
/// a dead daemon is replaced; one with a live daemon behind it is an error.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        }
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{}: another xswd is running (its socket answers); stop it first or use --socket",
                path.display()
            ));
        }
        std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let l = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match xsw_live::sys::group_id("xsw") {
        Ok(Some(gid)) => {
            if let Err(e) = std::os::unix::fs::chown(path, Some(0), Some(gid)) {
                tracing::warn!("{}: could not give it to group xsw: {e}", path.display());
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("looking up group xsw: {e}; the socket stays root's"),
    }
    Ok(l)
}

/// Accepts connections until `stop` is set, one thread each. Blocks in
/// accept(2): run it on its own thread, which ends with the process.
pub fn accept_loop(server: Arc<Server>, listener: UnixListener, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => {
                let server = server.clone();
                let stop = stop.clone();
                let spawned = std::thread::Builder::new()
                    .name("xswd-client".into())
                    .spawn(move || server.serve(s, &stop));
                if let Err(e) = spawned {
                    tracing::warn!("control socket: cannot start a thread: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("control socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
