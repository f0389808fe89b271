//! Log output: human-readable or JSON lines on stderr, colour only on a
//! terminal and never when `NO_COLOR` is set. `FLAGBASE_LOG` takes a full
//! tracing filter (e.g. `flagbase=debug,hyper=info`) for finer control.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init(level: &str, format: &str) {
    let filter = std::env::var("FLAGBASE_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    // A second init (tests running in one process) keeps the first.
    let _ = if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}
