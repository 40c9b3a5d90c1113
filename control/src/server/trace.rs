//! Tracing a frame on the live tables.

use super::{internal, Server};
use crate::proto::{parse_hex, Code, ErrorBody, TraceReply};

impl Server {
    pub(super) fn trace(
        &self,
        bridge: &str,
        in_port: &str,
        frame: &str,
    ) -> Result<TraceReply, ErrorBody> {
        {
            let m = self.lock();
            let b = m.bridge(bridge)?;
            if !b.ports.iter().any(|p| p.name == in_port) {
                return Err(ErrorBody::new(
                    Code::NotFound,
                    format!("bridge {bridge} has no port {in_port}"),
                ));
            }
        }
        let bytes = parse_hex(frame).map_err(|e| ErrorBody::new(Code::Invalid, e).at("frame"))?;
        if bytes.len() > xsw_datapath::packet::MAX_FRAME {
            return Err(ErrorBody::new(
                Code::Invalid,
                format!(
                    "{} bytes: xsw carries frames up to {}",
                    bytes.len(),
                    xsw_datapath::packet::MAX_FRAME
                ),
            )
            .at("frame"));
        }
        let report = self
            .engine
            .trace(bridge, in_port, bytes)
            .map_err(internal)?;
        Ok(TraceReply {
            trace: report.json().into(),
            text: format!(
                "(bridge {bridge}, live tables; a dry run: nothing is learned, counted or sent)\n{}",
                report.render()
            ),
        })
    }
}
