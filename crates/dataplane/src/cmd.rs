//! Running the iproute2 / nftables tools, with errors that name the package to install.

use crate::{Error, Result};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The Debian package that provides a tool we run.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "ip" | "bridge" => "iproute2",
        "nft" => "nftables",
        "dnsmasq" => "dnsmasq-base",
        _ => "unknown",
    }
}

fn static_tool(tool: &str) -> &'static str {
    match tool {
        "ip" => "ip",
        "bridge" => "bridge",
        "nft" => "nft",
        "dnsmasq" => "dnsmasq",
        _ => "tool",
    }
}

/// Whether `tool` is an executable file in one of the PATH directories (or /usr/sbin, /sbin).
pub fn tool_available(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| {
            std::fs::metadata(dir.join(tool))
                .map(|m| m.is_file())
                .unwrap_or(false)
        })
}

/// Runs `program args...`, feeding `stdin`, and returns its stdout when it exits 0.
pub(crate) async fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let shown = format!("{program} {}", args.join(" "));
    let mut child = command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::MissingTool {
                tool: static_tool(program),
                package: package_of(program),
            }
        } else {
            Error::io(format!("starting `{shown}`"), e)
        }
    })?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data)
            .await
            .map_err(|e| Error::io(format!("writing to `{shown}`"), e))?;
        drop(pipe);
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| Error::io(format!("waiting for `{shown}`"), e))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let lower = stderr.to_ascii_lowercase();
    if lower.contains("operation not permitted") || lower.contains("permission denied") {
        return Err(Error::NeedsRoot { what: shown });
    }
    Err(Error::Command {
        command: shown,
        status: out.status.to_string(),
        stderr,
    })
}
