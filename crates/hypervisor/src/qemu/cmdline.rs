//! The QEMU command line of one guest: q35 with pre-created PCIe root ports (hot-plug only works
//! into those), virtio disks by node name, the serial console to a file, QMP and VNC on unix
//! sockets, SMBIOS that tells cloud-init it runs on OpenStack. Started paused (`-S`) and
//! daemonized, so the guest outlives kumo and kumo resumes it once QMP is connected.

use serde_json::Value;
use std::path::{Path, PathBuf};

use super::host::Accel;
use crate::InstanceSpec;
use crate::volume::{DiskSource, VolumeDisk};

/// Files of one instance (the directory layout of DESIGN §6).
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: std::path::PathBuf,
    pub disk: std::path::PathBuf,
    pub ephemeral: std::path::PathBuf,
    pub swap: std::path::PathBuf,
    /// The config drive (`disk.config`, Nova's name).
    pub config_drive: std::path::PathBuf,
    pub console_log: std::path::PathBuf,
    pub pidfile: std::path::PathBuf,
    pub qmp: std::path::PathBuf,
    pub vnc: std::path::PathBuf,
}

/// Longest unix socket path the kernel takes (sun_path is 108 bytes with the NUL).
const SUN_PATH_MAX: usize = 107;

impl Paths {
    /// `instances/<uuid>/…`; the sockets go to a short directory under /tmp when the state
    /// directory's path is too long for a unix socket.
    pub fn new(instances: &Path, uuid: &str) -> Self {
        let dir = instances.join(uuid);
        let mut sock_dir = dir.clone();
        if dir.join("qmp.sock").as_os_str().len() > SUN_PATH_MAX {
            use sha2::Digest;
            let h = hex::encode(sha2::Sha256::digest(
                instances.as_os_str().as_encoded_bytes(),
            ));
            sock_dir = std::env::temp_dir()
                .join(format!("kumo-{}", &h[..12]))
                .join(uuid);
        }
        Self {
            disk: dir.join("disk"),
            ephemeral: dir.join("disk.eph0"),
            swap: dir.join("disk.swap"),
            config_drive: dir.join("disk.config"),
            console_log: dir.join("console.log"),
            pidfile: dir.join("qemu.pid"),
            qmp: sock_dir.join("qmp.sock"),
            vnc: sock_dir.join("vnc.sock"),
            dir,
        }
    }
}

/// Knobs of the command line that come from the host, not the instance.
pub struct Launch<'a> {
    pub accel: Accel,
    pub root_ports: u32,
    pub kumo_version: &'a str,
}

fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// QEMU's option values separate with commas; a comma in a value is written twice.
fn esc(v: &str) -> String {
    v.replace(',', ",,")
}

/// One NIC of a guest: a VIF of the network info whose tap the network agent made.
#[derive(Debug, Clone, PartialEq)]
pub struct Nic {
    /// The port (the VIF's `id`); the NIC's QEMU ids derive from it ([`nic_ids`]).
    pub port_id: String,
    /// The tap's name (the VIF's `devname`).
    pub devname: String,
    pub mac: String,
    pub mtu: Option<u16>,
    /// The network namespace the tap lives in (`details.namespace`).
    pub namespace: String,
}

/// The NIC of one VIF: one with a `devname` and a `details.namespace` (a VIF without them is
/// not wired to this host's data plane and gets no NIC).
pub fn nic_of(vif: &Value) -> Option<Nic> {
    let devname = vif["devname"].as_str().filter(|d| !d.is_empty())?;
    let namespace = vif["details"]["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())?;
    Some(Nic {
        port_id: vif["id"].as_str().unwrap_or_default().to_string(),
        devname: devname.to_string(),
        mac: vif["address"].as_str().unwrap_or_default().to_string(),
        mtu: vif["network"]["meta"]["mtu"]
            .as_u64()
            .and_then(|m| u16::try_from(m).ok())
            .filter(|m| *m >= 68),
        namespace: namespace.to_string(),
    })
}

/// The NICs of the network info, in its order.
pub fn nics(spec: &InstanceSpec) -> Vec<Nic> {
    spec.network_info
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(nic_of)
        .collect()
}

/// QEMU's ids of a port's NIC: (netdev, device) = (`hostnet-<port>`, `net-<port>`), so a
/// NIC made at launch and one hot-plugged later are found the same way at detach. A port id
/// QEMU would refuse as an id (ids are a letter, then letters, digits, `-`, `.`, `_`) falls
/// back to the NIC's position `n`.
pub fn nic_ids(port_id: &str, n: usize) -> (String, String) {
    let usable = !port_id.is_empty()
        && port_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if usable {
        (format!("hostnet-{port_id}"), format!("net-{port_id}"))
    } else {
        (format!("hostnet{n}"), format!("net{n}"))
    }
}

/// `-device`/`device_add` properties of a NIC (without the bus).
pub fn nic_device(nic: &Nic, netdev: &str, id: &str) -> String {
    let mut dev = format!(
        "virtio-net-pci,netdev={netdev},id={id},mac={}",
        esc(&nic.mac)
    );
    if let Some(mtu) = nic.mtu {
        dev.push_str(&format!(",host_mtu={mtu}"));
    }
    dev
}

/// The one network namespace QEMU must run in for its NICs to find their taps; an error when
/// the VIFs name several.
pub fn nic_namespace(nics: &[Nic]) -> Result<Option<String>, String> {
    let mut it = nics.iter().map(|n| n.namespace.as_str());
    let Some(first) = it.next() else {
        return Ok(None);
    };
    match it.find(|n| *n != first) {
        Some(other) => Err(format!(
            "the guest's ports are in two network namespaces ({first}, {other}); one QEMU runs in one"
        )),
        None => Ok(Some(first.to_string())),
    }
}

/// Seconds a guest's NBD client keeps retrying a lost connection before failing requests: a
/// volume host whose export daemon is restarted (kumo re-exports at start) comes back within
/// it, and the guest's I/O only waits.
pub const NBD_RECONNECT_DELAY: u64 = 30;

/// The `blockdev-add` arguments of a volume: its protocol node (a file, a host_device, or an
/// NBD export of the volume's host) and its format node, read-only for an `ro` attachment,
/// discard passed down.
pub fn volume_nodes(v: &VolumeDisk, node: &str, file: &str) -> (Value, Value) {
    let mut f = match &v.source {
        DiskSource::Path(path) => {
            let driver = if v.is_block_device() {
                "host_device"
            } else {
                "file"
            };
            serde_json::json!({"driver": driver, "node-name": file,
                "filename": p(path), "cache": {"direct": false}, "read-only": v.read_only})
        }
        DiskSource::Nbd {
            host,
            port,
            export,
            psk,
        } => {
            let mut n = serde_json::json!({"driver": "nbd", "node-name": file,
                "server": {"type": "inet", "host": host, "port": port.to_string()},
                "export": export, "reconnect-delay": NBD_RECONNECT_DELAY,
                "read-only": v.read_only});
            if psk.is_some() {
                n["tls-creds"] = tls_creds_id(file).into();
            }
            n
        }
    };
    let mut fmt = serde_json::json!({"driver": v.format, "node-name": node, "file": file,
        "read-only": v.read_only});
    if v.discard && !v.read_only {
        f["discard"] = "unmap".into();
        fmt["discard"] = "unmap".into();
    }
    (f, fmt)
}

/// The id of the `tls-creds-psk` object of a volume's NBD node.
pub fn tls_creds_id(file: &str) -> String {
    format!("{file}-tls")
}

/// Where the `keys.psk` of a volume's NBD node is (QEMU reads it when the object is made).
pub fn psk_dir(paths: &Paths, file: &str) -> PathBuf {
    paths.dir.join(format!("{file}-psk"))
}

/// The `tls-creds-psk` object (`object-add` arguments, and `-object` JSON) a volume's NBD
/// node needs: the client end, its identity, the key file's directory. `None`: no TLS.
pub fn volume_tls_object(v: &VolumeDisk, file: &str, paths: &Paths) -> Option<Value> {
    match &v.source {
        DiskSource::Nbd { psk: Some(psk), .. } => Some(serde_json::json!({
            "qom-type": "tls-creds-psk", "id": tls_creds_id(file), "endpoint": "client",
            "dir": p(&psk_dir(paths, file)), "username": psk.identity})),
        _ => None,
    }
}

/// Write the `keys.psk` (0600, in a 0700 directory) of a volume's NBD node, before QEMU
/// makes its TLS object (at launch or hot-plug).
pub fn write_psk(v: &VolumeDisk, file: &str, paths: &Paths) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let DiskSource::Nbd { psk: Some(psk), .. } = &v.source else {
        return Ok(());
    };
    let dir = psk_dir(paths, file);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join("keys.psk"))?;
    writeln!(f, "{}:{}", psk.identity, psk.key)
}

/// Write the `keys.psk` of every NBD volume of a spec with TLS, under the file node names
/// [`build`] gives them (the boot volume's is `root-file`), before QEMU starts.
pub fn write_psks(spec: &InstanceSpec, paths: &Paths) -> std::io::Result<()> {
    for v in VolumeDisk::all(&spec.block_device_info).unwrap_or_default() {
        let file = if v.boot {
            "root-file".to_string()
        } else {
            v.node_names().1
        };
        write_psk(&v, &file, paths)?;
    }
    Ok(())
}

/// A volume's nodes as `-blockdev` options (the JSON syntax QEMU also takes there).
fn volume_blockdevs(v: &VolumeDisk, node: &str, file: &str, paths: &Paths) -> Vec<String> {
    let (f, fmt) = volume_nodes(v, node, file);
    let mut a = Vec::new();
    if let Some(obj) = volume_tls_object(v, file, paths) {
        a.extend(["-object".to_string(), obj.to_string()]);
    }
    a.extend([
        "-blockdev".into(),
        f.to_string(),
        "-blockdev".into(),
        fmt.to_string(),
    ]);
    a
}

pub fn build(spec: &InstanceSpec, paths: &Paths, l: &Launch<'_>) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    let name = format!("guest={},debug-threads=on", esc(&spec.name));
    let accel = match l.accel {
        Accel::Kvm => "kvm".to_string(),
        // Multi-threaded TCG: one host thread per vCPU.
        Accel::Tcg => "tcg,thread=multi,tb-size=64".to_string(),
    };
    push(&["-name", &name, "-uuid", &spec.uuid]);
    push(&["-machine", "q35,usb=off,vmport=off,dump-guest-core=off"]);
    push(&["-accel", &accel]);
    if l.accel == Accel::Kvm {
        push(&["-cpu", "host"]);
    }
    let smp = spec.vcpus.max(1).to_string();
    let mem = format!("{}M", spec.memory_mb.max(16));
    push(&["-smp", &smp, "-m", &mem]);
    let smbios = format!(
        "type=1,manufacturer=OpenStack Foundation,product=OpenStack Nova,version={},serial={},uuid={},family=Virtual Machine",
        esc(l.kumo_version),
        spec.uuid,
        spec.uuid
    );
    push(&["-smbios", &smbios]);
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&["-rtc", "base=utc,driftfix=slew"]);
    push(&["-boot", "strict=on"]);
    // QMP and VNC on unix sockets; serial console appended to console.log.
    let qmp = format!(
        "socket,id=qmp,path={},server=on,wait=off",
        esc(&p(&paths.qmp))
    );
    push(&["-chardev", &qmp, "-mon", "chardev=qmp,mode=control"]);
    let log = format!(
        "file,id=serial0,path={},append=on",
        esc(&p(&paths.console_log))
    );
    push(&["-chardev", &log, "-serial", "chardev:serial0"]);
    let vnc = format!("unix:{}", p(&paths.vnc));
    push(&["-vnc", &vnc]);
    push(&["-device", "VGA,id=video0,bus=pcie.0"]);
    // Root ports 1..N; the first ones carry the boot disks, the rest wait for hot-plug.
    for n in 1..=l.root_ports {
        let port = format!("pcie-root-port,id=rp{n},bus=pcie.0,chassis={n}");
        push(&["-device", &port]);
    }
    let mut port = 1;
    let disk =
        |a: &mut Vec<String>, port: &mut u32, node: &str, file: &Path, fmt: &str, boot: bool| {
            a.push("-blockdev".into());
            a.push(format!(
                "driver=file,filename={},node-name={node}-file,cache.direct=off,discard=unmap",
                esc(&p(file))
            ));
            a.push("-blockdev".into());
            a.push(format!(
                "driver={fmt},file={node}-file,node-name={node},discard=unmap"
            ));
            a.push("-device".into());
            a.push(format!(
                "virtio-blk-pci,drive={node},id={node}-dev,bus=rp{}{}",
                *port,
                if boot { ",bootindex=1" } else { "" }
            ));
            *port += 1;
        };
    let volumes = VolumeDisk::all(&spec.block_device_info).unwrap_or_default();
    match volumes.iter().find(|v| v.boot) {
        // Boot from volume: the volume is the root disk (its node and device keep the root's
        // names; a boot volume is not detached from a guest).
        Some(v) => {
            let mut props = volume_blockdevs(v, "root", "root-file", paths);
            a.append(&mut props);
            a.push("-device".into());
            a.push(format!(
                "virtio-blk-pci,drive=root,id=root-dev,bus=rp{port},bootindex=1,serial={}",
                esc(&v.serial())
            ));
            port += 1;
        }
        None => disk(&mut a, &mut port, "root", &paths.disk, "qcow2", true),
    }
    if spec.ephemeral_gb > 0 {
        disk(&mut a, &mut port, "eph0", &paths.ephemeral, "raw", false);
    }
    if spec.swap_mb > 0 {
        disk(&mut a, &mut port, "swap", &paths.swap, "raw", false);
    }
    if spec.config_drive {
        // Read-only virtio disk: cloud-init and kumo-tiny find it by its label, config-2.
        a.push("-blockdev".into());
        a.push(format!(
            "driver=file,filename={},node-name=config-file,read-only=on",
            esc(&p(&paths.config_drive))
        ));
        a.push("-blockdev".into());
        a.push("driver=raw,file=config-file,node-name=config,read-only=on".into());
        a.push("-device".into());
        a.push(format!(
            "virtio-blk-pci,drive=config,id=config-dev,bus=rp{port},serial=config-2"
        ));
        port += 1;
    }
    // Attached volumes on the next root ports, with the ids a hot-plug gives them.
    for v in volumes.iter().filter(|v| !v.boot) {
        let (node, file) = v.node_names();
        let mut props = volume_blockdevs(v, &node, &file, paths);
        a.append(&mut props);
        let bus = if port <= l.root_ports {
            format!("rp{port}")
        } else {
            "pcie.0".to_string()
        };
        a.push("-device".into());
        a.push(format!(
            "virtio-blk-pci,drive={node},id={},bus={bus},serial={}",
            esc(&v.device_id()),
            esc(&v.serial())
        ));
        port += 1;
    }
    let rng = format!("virtio-rng-pci,id=rng0,bus=rp{port}");
    a.extend([
        "-object".to_string(),
        "rng-random,id=rng-src,filename=/dev/urandom".to_string(),
    ]);
    a.extend(["-device".to_string(), format!("{rng},rng=rng-src")]);
    // NICs on the next root ports (the root complex when none is left): a tap the network
    // agent made, found by name in the namespace QEMU runs in.
    for (n, nic) in nics(spec).iter().enumerate() {
        port += 1;
        let bus = if port <= l.root_ports {
            format!("rp{port}")
        } else {
            "pcie.0".to_string()
        };
        let (netdev, id) = nic_ids(&nic.port_id, n);
        a.push("-netdev".into());
        a.push(format!(
            "tap,id={netdev},ifname={},script=no,downscript=no,vnet_hdr=on",
            esc(&nic.devname)
        ));
        a.push("-device".into());
        a.push(format!("{},bus={bus}", nic_device(nic, &netdev, &id)));
    }
    a.extend([
        "-pidfile".to_string(),
        p(&paths.pidfile),
        "-daemonize".to_string(),
        "-S".to_string(),
    ]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> InstanceSpec {
        InstanceSpec {
            uuid: "11111111-2222-3333-4444-555555555555".into(),
            name: "web,1".into(),
            hostname: "web-1".into(),
            vcpus: 2,
            memory_mb: 256,
            root_gb: 1,
            ephemeral_gb: 1,
            swap_mb: 0,
            image_id: Some("img".into()),
            image_meta: json!({}),
            user_data: None,
            key_data: None,
            metadata: json!({}),
            config_drive: false,
            config_drive_files: vec![],
            config_drive_format: String::new(),
            network_info: json!([]),
            block_device_info: json!([]),
        }
    }

    #[test]
    fn command_line_has_what_cloud_init_and_hotplug_need() {
        let paths = Paths::new(Path::new("/var/lib/kumo/instances"), &spec().uuid);
        let a = build(
            &spec(),
            &paths,
            &Launch {
                accel: Accel::Tcg,
                root_ports: 8,
                kumo_version: "0.1.0",
            },
        )
        .join(" ");
        assert!(a.contains("product=OpenStack Nova"), "{a}");
        assert!(a.contains("serial=11111111-2222-3333-4444-555555555555"));
        assert!(a.contains("guest=web,,1"), "commas escaped: {a}");
        assert!(a.contains("rp8"));
        assert!(a.contains("-smp 2 -m 256M"));
        assert!(a.contains("bootindex=1"));
        assert!(a.contains("node-name=eph0"));
        assert!(a.contains("-S"));
        assert!(!a.contains("-kernel"));
    }

    #[test]
    fn a_nic_per_wired_vif() {
        let mut s = spec();
        s.ephemeral_gb = 0;
        let vif = |id: &str, ns: &str, mtu: u64| {
            json!({"id": id, "address": format!("fa:16:3e:00:00:0{}", &id[1..]),
                "devname": format!("tap{id}"), "type": "bridge",
                "details": {"namespace": ns, "bridge_name": "brq1"},
                "network": {"meta": {"mtu": mtu}}})
        };
        s.network_info = json!([vif("p1", "kumo-host", 1450), vif("p2", "kumo-host", 0),
            {"id": "p3", "devname": "tapp3", "details": {}}]);
        let n = nics(&s);
        assert_eq!(n.len(), 2, "the VIF without a namespace gets no NIC");
        assert_eq!(n[0].mtu, Some(1450));
        assert_eq!(n[1].mtu, None);
        assert_eq!(nic_namespace(&n).unwrap().as_deref(), Some("kumo-host"));
        assert_eq!(n[0].port_id, "p1");
        let paths = Paths::new(Path::new("/s"), &s.uuid);
        let l = Launch {
            accel: Accel::Tcg,
            root_ports: 3,
            kumo_version: "0",
        };
        let a = build(&s, &paths, &l).join(" ");
        // root on rp1, rng on rp2, NICs on rp3 and then the root complex.
        assert!(a.contains("virtio-rng-pci,id=rng0,bus=rp2"), "{a}");
        assert!(
            a.contains("-netdev tap,id=hostnet-p1,ifname=tapp1,script=no,downscript=no,vnet_hdr=on -device virtio-net-pci,netdev=hostnet-p1,id=net-p1,mac=fa:16:3e:00:00:01,host_mtu=1450,bus=rp3"),
            "{a}"
        );
        assert!(
            a.contains("-netdev tap,id=hostnet-p2,ifname=tapp2,script=no,downscript=no,vnet_hdr=on -device virtio-net-pci,netdev=hostnet-p2,id=net-p2,mac=fa:16:3e:00:00:02,bus=pcie.0 "),
            "{a}"
        );
        assert!(!a.contains("tapp3"));
        let mut other = n.clone();
        other[1].namespace = "elsewhere".into();
        assert!(nic_namespace(&other).is_err());
        assert_eq!(nic_namespace(&[]).unwrap(), None);
        // No network info, no NIC.
        assert!(!build(&spec(), &paths, &l).join(" ").contains("-netdev"));
    }

    #[test]
    fn volumes_are_disks_and_a_boot_volume_is_the_root() {
        let mut s = spec();
        s.ephemeral_gb = 0;
        let vol = |id: &str, boot: Option<i64>, mode: &str| {
            json!({"volume_id": id, "device_name": "/dev/vdb", "boot_index": boot,
                "connection_info": {"driver_volume_type": "local",
                    "data": {"device_path": format!("/vols/{id}"), "format": "qcow2",
                        "access_mode": mode, "discard": true}}})
        };
        let l = Launch {
            accel: Accel::Tcg,
            root_ports: 8,
            kumo_version: "0",
        };
        let paths = Paths::new(Path::new("/s"), &s.uuid);
        s.block_device_info = json!([vol("0b7f3a52-9a43-4f6e-8d0e-55a1c2b3d4e5", None, "ro"),
            {"volume_id": "pending", "connection_info": null}]);
        let a = build(&s, &paths, &l).join(" ");
        assert!(a.contains("filename=/s/"), "image root kept: {a}");
        assert!(
            a.contains("virtio-blk-pci,drive=vol0b7f3a529a434f6e8d0e55a1,id=volume-0b7f3a52-9a43-4f6e-8d0e-55a1c2b3d4e5,bus=rp2,serial=0b7f3a52-9a43-4f6e-8"),
            "{a}"
        );
        assert!(a.contains("\"read-only\":true"), "{a}");
        assert!(!a.contains("pending"));
        s.block_device_info = json!([vol("boot", Some(0), "rw")]);
        let a = build(&s, &paths, &l).join(" ");
        assert!(a.contains("\"filename\":\"/vols/boot\""), "{a}");
        assert!(a.contains("\"discard\":\"unmap\""), "{a}");
        assert!(
            a.contains("virtio-blk-pci,drive=root,id=root-dev,bus=rp1,bootindex=1,serial=boot"),
            "{a}"
        );
        assert!(
            !a.contains("/s/11111111-2222-3333-4444-555555555555/disk,"),
            "{a}"
        );
    }

    #[test]
    fn nbd_volumes_are_nbd_nodes_under_their_format_node() {
        let entry = |mode: &str| {
            json!({"volume_id": "0b7f3a52-9a43-4f6e-8d0e-55a1c2b3d4e5", "device_name": "/dev/vdb",
                "boot_index": null, "connection_info": {"driver_volume_type": "nbd",
                    "data": {"host": "10.250.0.1", "port": 10809, "name": "volume-0b7f",
                        "format": "raw", "access_mode": mode, "discard": true}}})
        };
        let v = VolumeDisk::from_entry(&entry("rw")).expect("nbd");
        let (f, fmt) = volume_nodes(&v, "vol1", "vol1-f");
        assert_eq!(
            f,
            json!({"driver": "nbd", "node-name": "vol1-f",
                "server": {"type": "inet", "host": "10.250.0.1", "port": "10809"},
                "export": "volume-0b7f", "reconnect-delay": NBD_RECONNECT_DELAY,
                "read-only": false, "discard": "unmap"})
        );
        assert_eq!(
            fmt,
            json!({"driver": "raw", "node-name": "vol1", "file": "vol1-f", "read-only": false,
                "discard": "unmap"})
        );
        let ro = VolumeDisk::from_entry(&entry("ro")).expect("nbd ro");
        let (f, fmt) = volume_nodes(&ro, "vol1", "vol1-f");
        assert_eq!(
            (f["read-only"].clone(), fmt["read-only"].clone()),
            (json!(true), json!(true))
        );
        assert!(
            f.get("discard").is_none() && f.get("filename").is_none(),
            "{f}"
        );
        // Cold boot: the same nodes on the command line.
        let mut s = spec();
        s.block_device_info = json!([entry("rw")]);
        let paths = Paths::new(Path::new("/s"), &s.uuid);
        let l = Launch {
            accel: Accel::Tcg,
            root_ports: 8,
            kumo_version: "0",
        };
        let a = build(&s, &paths, &l).join(" ");
        assert!(
            a.contains("\"server\":{\"host\":\"10.250.0.1\",\"port\":\"10809\",\"type\":\"inet\"}"),
            "{a}"
        );
        assert!(
            a.contains("virtio-blk-pci,drive=vol0b7f3a529a434f6e8d0e55a1,"),
            "{a}"
        );
        assert!(!a.contains("tls-creds"), "{a}");
        // With a TLS pre-shared key: a tls-creds-psk object (client end, the key's directory
        // in the instance's) that the NBD node names; the key itself is only in keys.psk.
        let mut tls = entry("rw");
        tls["connection_info"]["data"]["auth_method"] = json!("tls-psk");
        tls["connection_info"]["data"]["auth_username"] = json!("volume-0b7f");
        tls["connection_info"]["data"]["auth_password"] = json!("c0ffee");
        let v = VolumeDisk::from_entry(&tls).expect("nbd tls");
        let (f, _) = volume_nodes(&v, "vol1", "vol1-f");
        assert_eq!(f["tls-creds"], "vol1-f-tls");
        let dir = tempfile::tempdir().expect("tmp");
        let paths = Paths::new(dir.path(), &s.uuid);
        assert_eq!(
            volume_tls_object(&v, "vol1-f", &paths).expect("object"),
            json!({"qom-type": "tls-creds-psk", "id": "vol1-f-tls", "endpoint": "client",
                "dir": p(&paths.dir.join("vol1-f-psk")), "username": "volume-0b7f"})
        );
        s.block_device_info = json!([tls]);
        let a = build(&s, &paths, &l).join(" ");
        assert!(a.contains("-object {\"dir\":"), "{a}");
        assert!(
            a.contains("\"tls-creds\":\"vol0b7f3a529a434f6e8d0e55a1-f-tls\""),
            "{a}"
        );
        assert!(
            !a.contains("c0ffee"),
            "the key is not on the command line: {a}"
        );
        write_psks(&s, &paths).expect("write");
        let file = paths.dir.join("vol0b7f3a529a434f6e8d0e55a1-f-psk/keys.psk");
        assert_eq!(
            std::fs::read_to_string(&file).expect("keys.psk"),
            "volume-0b7f:c0ffee\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn nic_ids_come_from_the_port() {
        let port = "0b7f3a52-9a43-4f6e-8d0e-55a1c2b3d4e5";
        assert_eq!(
            nic_ids(port, 3),
            (format!("hostnet-{port}"), format!("net-{port}"))
        );
        assert_eq!(nic_ids("", 2), ("hostnet2".into(), "net2".into()));
        assert_eq!(nic_ids("a,b", 0), ("hostnet0".into(), "net0".into()));
    }

    #[test]
    fn long_state_dirs_get_short_socket_paths() {
        let long = Path::new("/tmp").join("x".repeat(120));
        let paths = Paths::new(&long, "11111111-2222-3333-4444-555555555555");
        assert!(paths.qmp.as_os_str().len() <= SUN_PATH_MAX);
        assert!(paths.disk.starts_with(&long));
        let short = Paths::new(Path::new("/s"), "u");
        assert_eq!(short.qmp, Path::new("/s/u/qmp.sock"));
    }
}
