//! `fake-qobra`: runs the fake Qobra server until SIGTERM, SIGINT or `POST /_fake/shutdown`.

use fake_qobra::{BodyFormat, Options as ServerOptions, Server, Tls};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Command-line usage.
const USAGE: &str = "usage: fake-qobra --listen 127.0.0.1:0 --api-key KEY [--port-file PATH]
                  [--tls-cert PATH --tls-key PATH] [--latency-ms N] [--max-body-bytes N]
                  [--body-format data|array]
  --listen ADDR          loopback address and port to listen on (port 0 picks one)
  --api-key KEY          the key clients must send in X-API-Key (or set FAKE_QOBRA_API_KEY)
  --port-file PATH       write the bound port to PATH once listening
  --tls-cert PATH        serve HTTPS with this PEM certificate chain (needs --tls-key)
  --tls-key PATH         the PEM private key of --tls-cert
  --latency-ms N         answer every public request N ms after it arrived
  --max-body-bytes N     answer 413 to a bulk request whose body is larger than N bytes
  --body-format F        the shape bulk bodies must have: data ({\"data\": [records]},
                         the default) or array (a bare array); the other is refused (400)";

/// Parsed command-line options.
struct Options {
    listen: String,
    api_key: String,
    port_file: Option<String>,
    tls: Option<(String, String)>,
    latency_ms: u64,
    max_body_bytes: Option<u64>,
    body_format: BodyFormat,
}

/// Parses the command line (and FAKE_QOBRA_API_KEY as a fallback for the key).
fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut listen = None;
    let mut api_key = std::env::var("FAKE_QOBRA_API_KEY").ok();
    let mut port_file = None;
    let (mut tls_cert, mut tls_key) = (None, None);
    let mut latency_ms = 0;
    let mut max_body_bytes = None;
    let mut body_format = BodyFormat::default();
    let number = |name: &str, v: String| {
        v.parse::<u64>()
            .map_err(|_| format!("{name} needs a non-negative integer, got '{v}'"))
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(format!("{name} needs a value"))
        };
        match name.as_str() {
            "--listen" => listen = Some(value()?),
            "--api-key" => api_key = Some(value()?),
            "--port-file" => port_file = Some(value()?),
            "--tls-cert" => tls_cert = Some(value()?),
            "--tls-key" => tls_key = Some(value()?),
            "--latency-ms" => latency_ms = number(&name, value()?)?,
            "--max-body-bytes" => max_body_bytes = Some(number(&name, value()?)?),
            "--body-format" => {
                let v = value()?;
                body_format = BodyFormat::from_name(&v)
                    .ok_or(format!("--body-format is data or array, not '{v}'"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    Ok(Options {
        listen: listen.ok_or("--listen is required")?,
        api_key: api_key
            .filter(|k| !k.is_empty())
            .ok_or("--api-key is required")?,
        port_file,
        tls,
        latency_ms,
        max_body_bytes,
        body_format,
    })
}

/// Starts the server, announces its address, and waits for a stop.
fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("fake-qobra: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let tls = match &opts.tls {
        None => None,
        Some((cert, key)) => match Tls::from_files(Path::new(cert), Path::new(key)) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("fake-qobra: cannot serve HTTPS: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let options = ServerOptions {
        tls,
        latency: Duration::from_millis(opts.latency_ms),
        max_body_bytes: opts.max_body_bytes,
        body_format: opts.body_format,
    };
    let mut server = match Server::start_with(&opts.listen, &opts.api_key, options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-qobra: cannot listen on {}: {e}", opts.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = server.addr();
    if let Some(path) = &opts.port_file {
        if let Err(e) = std::fs::write(path, format!("{}\n", addr.port())) {
            eprintln!("fake-qobra: cannot write port file {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
    if let Err(e) = stop_on_signals(&server) {
        eprintln!("fake-qobra: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    server.wait();
    ExitCode::SUCCESS
}

/// Stops the server on the first SIGTERM or SIGINT.
fn stop_on_signals(server: &Server) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    let stopper = server.stopper();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                stopper();
            }
        })?;
    Ok(())
}
