//! `scsiport ctl`: one request to a running server's control socket, its answer printed as text or JSON.

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// The whole running configuration and state.
    List,
    Adapters,
    Disks,
    Targets,
    /// iSCSI sessions.
    Sessions,
    Exports,
    /// NBD connections and iSCSI sessions.
    Connections,
    Counters,
    /// Map a disk into a running target as LUN (its sessions see REPORTED LUNS DATA HAS CHANGED).
    AddLun {
        target: String,
        lun: u64,
        disk: String,
    },
    RemoveLun {
        target: String,
        lun: u64,
    },
    /// Serve another NBD export.
    AddExport {
        name: String,
        disk: String,
        #[arg(long)]
        read_only: bool,
        #[arg(long)]
        description: Option<String>,
    },
    /// Stop serving an export (its clients get ESHUTDOWN).
    RemoveExport {
        name: String,
    },
    /// End an iSCSI session.
    CloseSession {
        tsih: u16,
        #[arg(long)]
        portal: Option<std::net::SocketAddr>,
    },
    /// Admit another initiator (an IQN, or a pattern with * and ?) to a target; later logins are checked.
    AclAdd {
        target: String,
        initiator: String,
    },
    /// Take an initiator name or pattern off a target's access list; sessions already logged in stay.
    AclRemove {
        target: String,
        initiator: String,
    },
    /// Set a disk's fault injection (every switch not given is off; no switch clears them all).
    Fault {
        disk: String,
        /// Reads of these blocks end MEDIUM ERROR, writes too: START:COUNT.
        #[arg(long)]
        medium_error: Option<String>,
        /// The next N commands never complete (the port's timeout resets the bus).
        #[arg(long, default_value_t = 0)]
        hang: u32,
        #[arg(long, default_value_t = 0)]
        aborted_command: u32,
        #[arg(long, default_value_t = 0)]
        unit_attention: u32,
        #[arg(long, default_value_t = 0)]
        busy: u32,
        /// The HBA stops asserting DREQ after this many bytes of a data phase.
        #[arg(long)]
        dma_stall_after: Option<u64>,
        #[arg(long)]
        bus_reset: bool,
        /// Counted faults hit only these opcodes (comma-separated, e.g. 0x28,0x2a).
        #[arg(long)]
        opcodes: Option<String>,
    },
    /// Change an adapter's verifier mode: strict, warn or off.
    Verifier {
        adapter: String,
        mode: String,
    },
    /// Read the configuration file again (as SIGHUP does).
    Reload,
    /// Send one request written as JSON (see docs/control.md).
    Raw {
        request: String,
    },
}

fn number(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).with_context(|| format!("'{s}' is not a number")),
        None => t.parse().with_context(|| format!("'{s}' is not a number")),
    }
}

fn request(cmd: CtlCommand) -> anyhow::Result<Value> {
    Ok(match cmd {
        CtlCommand::List => json!({"cmd": "list"}),
        CtlCommand::Adapters => json!({"cmd": "adapters"}),
        CtlCommand::Disks => json!({"cmd": "disks"}),
        CtlCommand::Targets => json!({"cmd": "targets"}),
        CtlCommand::Sessions => json!({"cmd": "sessions"}),
        CtlCommand::Exports => json!({"cmd": "exports"}),
        CtlCommand::Connections => json!({"cmd": "connections"}),
        CtlCommand::Counters => json!({"cmd": "counters"}),
        CtlCommand::AddLun { target, lun, disk } => {
            json!({"cmd": "add-lun", "target": target, "lun": lun, "disk": disk})
        }
        CtlCommand::RemoveLun { target, lun } => json!({"cmd": "remove-lun", "target": target, "lun": lun}),
        CtlCommand::AddExport { name, disk, read_only, description } => {
            json!({"cmd": "add-export", "name": name, "disk": disk, "read_only": read_only, "description": description})
        }
        CtlCommand::RemoveExport { name } => json!({"cmd": "remove-export", "name": name}),
        CtlCommand::CloseSession { tsih, portal } => json!({"cmd": "close-session", "tsih": tsih, "portal": portal}),
        CtlCommand::AclAdd { target, initiator } => json!({"cmd": "acl-add", "target": target, "initiator": initiator}),
        CtlCommand::AclRemove { target, initiator } => {
            json!({"cmd": "acl-remove", "target": target, "initiator": initiator})
        }
        CtlCommand::Fault {
            disk,
            medium_error,
            hang,
            aborted_command,
            unit_attention,
            busy,
            dma_stall_after,
            bus_reset,
            opcodes,
        } => {
            let medium = match medium_error {
                Some(m) => {
                    let Some((s, c)) = m.split_once(':') else { bail!("--medium-error: '{m}' is not START:COUNT") };
                    Some(json!({"start": number(s)?, "count": number(c)?}))
                }
                None => None,
            };
            let opcodes = match opcodes {
                Some(o) => Some(
                    o.split(',')
                        .map(|x| number(x).and_then(|v| u8::try_from(v).context("an opcode is one byte")))
                        .collect::<anyhow::Result<Vec<u8>>>()?,
                ),
                None => None,
            };
            json!({"cmd": "fault", "disk": disk, "faults": {
                "medium_error": medium, "hang": hang, "aborted_command": aborted_command,
                "unit_attention": unit_attention, "busy": busy, "dma_stall_after": dma_stall_after,
                "bus_reset": bus_reset, "opcodes": opcodes,
            }})
        }
        CtlCommand::Verifier { adapter, mode } => {
            if !matches!(mode.as_str(), "strict" | "warn" | "off") {
                bail!("'{mode}' is not strict, warn or off");
            }
            json!({"cmd": "verifier", "adapter": adapter, "mode": mode})
        }
        CtlCommand::Reload => json!({"cmd": "reload"}),
        CtlCommand::Raw { request } => serde_json::from_str(&request).context("the request is not JSON")?,
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A human rendering of an answer: one line per item for the lists, indented JSON for the rest.
fn text(kind: &str, v: &Value) -> String {
    let items = v.as_array();
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    match (kind, items) {
        ("adapters", Some(a)) => {
            for x in a {
                line(format!(
                    "{}  io {}  irq {}  dma {}  verifier {}  srbs {}  dma-ops {}",
                    s(&x["name"]),
                    s(&x["io_base"]),
                    s(&x["irq"]),
                    s(&x["dma_channel"]),
                    s(&x["verifier"]),
                    s(&x["stats"]["srbs_completed"]),
                    s(&x["stats"]["dma_ops"])
                ))
            }
        }
        ("disks", Some(a)) => {
            for x in a {
                line(format!(
                    "{}  {} bytes  {}-byte blocks  {}  {}/{}/{}  serial {}  naa {}{}",
                    s(&x["disk"]),
                    s(&x["size"]),
                    s(&x["block_size"]),
                    s(&x["backend"]),
                    s(&x["vendor"]),
                    s(&x["product"]),
                    s(&x["revision"]),
                    s(&x["serial"]),
                    s(&x["naa"]),
                    if x["faults"].is_null() { String::new() } else { format!("  faults {}", x["faults"]) }
                ))
            }
        }
        ("targets", Some(a)) => {
            for x in a {
                let luns: Vec<String> = x["luns"]
                    .as_array()
                    .map(|l| l.iter().map(|m| format!("{}={}", s(&m["lun"]), s(&m["disk"]))).collect())
                    .unwrap_or_default();
                line(format!("{}  portals {}  LUNs {}", s(&x["name"]), x["portals"], luns.join(" ")))
            }
        }
        ("sessions", Some(a)) => {
            for x in a {
                line(format!(
                    "tsih {}  {}  {}  target {}  from {}  portal {}",
                    s(&x["tsih"]),
                    s(&x["type"]),
                    s(&x["initiator"]),
                    s(&x["target"]),
                    s(&x["peer"]),
                    s(&x["portal"])
                ))
            }
        }
        ("exports", Some(a)) => {
            for x in a {
                line(format!(
                    "{}  disk {}  {} bytes{}  reads {} writes {}",
                    s(&x["name"]),
                    s(&x["disk"]),
                    s(&x["size"]),
                    if x["read_only"] == Value::Bool(true) { "  read-only" } else { "" },
                    s(&x["counters"]["reads"]),
                    s(&x["counters"]["writes"])
                ))
            }
        }
        _ => line(serde_json::to_string_pretty(v).unwrap_or_default()),
    }
    out
}

/// Run `scsiport ctl`; the exit status is 0 when the server did what was asked.
pub fn run(socket: Option<PathBuf>, json: bool, cmd: CtlCommand) -> anyhow::Result<i32> {
    let path = socket.unwrap_or_else(|| PathBuf::from(scsiport::frontends_config::DEFAULT_CONTROL_SOCKET));
    let req = request(cmd)?;
    let kind = req["cmd"].as_str().unwrap_or("").to_string();
    let reply = scsiport::control::call(&path, &req)
        .with_context(|| format!("control socket {} (is scsiport serve running?)", path.display()))?;
    if reply["ok"] != Value::Bool(true) {
        let msg = reply["error"].as_str().unwrap_or("the server refused the request");
        if json {
            println!("{reply}");
        }
        eprintln!("scsiport: ctl {kind}: {msg}");
        return Ok(1);
    }
    let result = &reply["result"];
    let out = if json { format!("{result}\n") } else { text(&kind, result) };
    // A reader that stops early (`| head`) is not an error of ours.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    Ok(0)
}
