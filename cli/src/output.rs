//! Output for people (plain lines) or for programs (`--json`: one object per line).

use std::io::Write;

use hyperswarm::rpc::Reply;
use serde_json::{json, Value};

/// Where results go.
#[derive(Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    /// Emits one event: `value` as a JSON line, or `human` as text.
    pub fn emit(&self, value: Value, human: impl FnOnce() -> String) {
        let mut stdout = std::io::stdout().lock();
        let line = if self.json {
            value.to_string()
        } else {
            human()
        };
        // A closed stdout (the reader went away) is not worth crashing over.
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }
}

/// A reply's sender as `{host, port, id}`.
pub fn node_json(r: &Reply) -> Value {
    json!({
        "host": r.from.ip().to_string(),
        "port": r.from.port(),
        "id": r.from_id.map(|id| id.to_hex()),
    })
}
