//! How long a config drive takes to build (run by bench/metadata.sh).
//!
//!   config_drive_bench [--runs N] [--json PATH]
//!
//! Builds the drive of one instance shaped like a real server's (an ssh key, 4 KiB of
//! user_data, one VIF with a DHCP subnet, server metadata, a floating IP) with
//! `metadata::config_drive::build`, N times (default 50) per format, iso9660 then vfat, into a
//! temp dir (removed at the end), after one warm-up build each. Prints p50/p90 ms per format as
//! a markdown table (and the part spent rendering the files in process); `--json` also writes
//! them to PATH. Needs genisoimage (iso9660), mkfs.vfat and mcopy (vfat).

use metadata::config_drive::{self, Format};
use metadata::tree::Settings;
use metadata::{InstanceFacts, PublicKey};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What compute would hand the drive for a server booted with a key, user_data and one port.
fn server_facts() -> InstanceFacts {
    let port = "5f3c9a1e-7b2d-4e8f-9a6c-1d2e3f4a5b6c";
    let network_info = json!([{
        "id": port, "address": "fa:16:3e:4c:2a:91", "type": "bridge",
        "devname": format!("tap{}", &port[..11]), "vnic_type": "normal",
        "details": {"bridge_name": "brq2a7e1c0d-9f", "connectivity": "l2"},
        "active": true, "preserve_on_delete": false,
        "network": {
            "id": "2a7e1c0d-9f4b-4d3a-8c2e-6b5a4f3e2d1c", "label": "private",
            "bridge": "brq2a7e1c0d-9f",
            "meta": {"mtu": 1450, "tenant_id": "6f1d0c2b3a4e4f5a8b9c0d1e2f3a4b5c"},
            "subnets": [{
                "id": "9c8b7a6f-5e4d-4c3b-8a2f-1e0d9c8b7a6f", "cidr": "10.0.0.0/26", "version": 4,
                "gateway": {"address": "10.0.0.1", "type": "gateway", "version": 4, "meta": {}},
                "dns": [{"address": "10.0.0.53", "type": "dns", "version": 4, "meta": {}}],
                "routes": [],
                "ips": [{"address": "10.0.0.23", "type": "fixed", "version": 4, "meta": {},
                         "floating_ips": []}],
                "meta": {"enable_dhcp": true},
            }],
        },
    }]);
    // 4 KiB of cloud-config, the size of a typical one with a few files and commands.
    let mut user_data = String::from("#cloud-config\npackages: [nginx]\nruncmd:\n");
    let mut n = 0;
    while user_data.len() < 4096 {
        user_data.push_str(&format!(
            "  - echo 'line {n} of the bench user_data' >> /var/log/ud\n"
        ));
        n += 1;
    }
    user_data.truncate(4096);
    InstanceFacts {
        uuid: "3b0c8f4e-1d2a-4c5b-9e6f-7a8b9c0d1e2f".into(),
        name: "web-1".into(),
        hostname: "web-1".into(),
        project_id: "6f1d0c2b3a4e4f5a8b9c0d1e2f3a4b5c".into(),
        availability_zone: Some("nova".into()),
        launch_index: 0,
        reservation_id: "r-4k2m9x1p".into(),
        flavor_name: "m1.small".into(),
        image_id: "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f".into(),
        key: Some(PublicKey {
            name: "mykey".into(),
            kind: "ssh".into(),
            data:
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx4mC0v0xkE7kfx4TFCN9Hg2cOvq0sB8X0c5Jv1kQ0R \
                   me@laptop\n"
                    .into(),
        }),
        meta: BTreeMap::from([("role".into(), "web".into())]),
        user_data: Some(user_data.into_bytes()),
        network_info,
        security_groups: vec!["default".into()],
        floating_ips: vec!["172.24.4.17".into()],
        password: String::new(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Figures {
    format: &'static str,
    total: Vec<Duration>,
    render: Vec<Duration>,
    bytes: u64,
}

async fn measure(
    facts: &InstanceFacts,
    s: &Settings,
    format: Format,
    name: &'static str,
    runs: usize,
) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("disk.config");
    // A warm-up: the tool's binary and libraries into the page cache.
    config_drive::build(facts, s, format, &dest)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut total = Vec::with_capacity(runs);
    let mut render = Vec::with_capacity(runs);
    for _ in 0..runs {
        std::fs::remove_file(&dest).expect("remove the last image");
        let t = Instant::now();
        config_drive::build(facts, s, format, &dest)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        total.push(t.elapsed());
        // The in-process part of build(): rendering every file of the drive.
        let t = Instant::now();
        let files = config_drive::files(facts, s);
        render.push(t.elapsed());
        assert!(!files.is_empty());
    }
    let bytes = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    total.sort();
    render.sort();
    Figures {
        format: name,
        total,
        render,
        bytes,
    }
}

#[tokio::main]
async fn main() {
    let mut runs = 50usize;
    let mut json_out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--json" => json_out = Some(args.next().expect("--json PATH")),
            other => {
                eprintln!(
                    "config_drive_bench: unknown argument {other}; usage: [--runs N] [--json PATH]"
                );
                std::process::exit(2);
            }
        }
    }
    assert!(runs > 0, "--runs must be at least 1");
    let facts = server_facts();
    let s = Settings::default();
    let n_files = config_drive::files(&facts, &s).len();
    let all = [
        measure(&facts, &s, Format::Iso9660, "iso9660", runs).await,
        measure(&facts, &s, Format::Vfat, "vfat", runs).await,
    ];
    println!(
        "| config drive ({n_files} files, 4 KiB user_data) | runs | p50 ms | p90 ms | render p50 ms | image |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut out = serde_json::Map::new();
    for f in &all {
        let (p50, p90) = (ms(percentile(&f.total, 0.5)), ms(percentile(&f.total, 0.9)));
        let render = ms(percentile(&f.render, 0.5));
        println!(
            "| {} | {} | {p50:.1} | {p90:.1} | {render:.2} | {} KiB |",
            f.format,
            f.total.len(),
            f.bytes / 1024
        );
        out.insert(
            f.format.into(),
            json!({"p50_ms": p50, "p90_ms": p90, "max_ms": ms(f.total[f.total.len() - 1]),
                   "render_p50_ms": render, "runs": f.total.len(), "image_bytes": f.bytes,
                   "files": n_files}),
        );
    }
    if let Some(path) = json_out {
        let text = serde_json::to_string_pretty(&out).expect("JSON");
        std::fs::write(&path, text + "\n").unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
}
