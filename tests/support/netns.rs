//! Runs a test inside a network namespace of its own (`unshare --net`, as root), with `lo`
//! up and a veth pair whose both ends stay inside, so multicast never leaves the machine.
//! Shared by tests/udp.rs and compat-tests/julia_sockets.rs (`#[path]` module).

const ENV: &str = "RESEAU_NETNS_CHILD";

/// In the parent: reruns this binary with only `test` selected inside a new network
/// namespace and returns false (asserting the child passed), or prints why it cannot
/// and returns false. In the child: sets up `lo` and returns true.
pub fn enter_or_skip(test: &str) -> bool {
    if std::env::var(ENV).as_deref() == Ok(test) {
        setup_lo();
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("timeout")
        .args(["60", "unshare", "--net", "--"])
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ENV, test)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped {test}: cannot run unshare ({e})");
            return false;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && text.contains("unshare failed") {
        eprintln!("skipped {test}: no network namespace here (needs root): {text}");
        return false;
    }
    assert!(
        out.status.success(),
        "{test} in a netns: {}\n{text}",
        out.status
    );
    assert!(text.contains("1 passed"), "child ran no test:\n{text}");
    false
}

fn ip(args: &[&str]) {
    let st = std::process::Command::new("ip").args(args).status();
    assert!(
        matches!(st, Ok(s) if s.success()),
        "ip {} failed: {st:?}",
        args.join(" ")
    );
}

/// `lo` up, plus a veth pair whose both ends stay in this namespace: Linux does not
/// deliver IPv6 multicast over `lo`, so the groups are joined on `rs0` (and the
/// sender's own copy, `IPV6_MULTICAST_LOOP`, is what the members receive).
fn setup_lo() {
    for (k, v) in [("all", "0"), ("default", "0")] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{k}/accept_dad"), v);
    }
    ip(&["link", "set", "lo", "up"]);
    ip(&["link", "add", "rs0", "type", "veth", "peer", "name", "rs1"]);
    ip(&["link", "set", "rs0", "up", "multicast", "on"]);
    ip(&["link", "set", "rs1", "up", "multicast", "on"]);
    ip(&["route", "add", "224.0.0.0/4", "dev", "rs0"]);
    // The IPv6 multicast route appears with the link-local address.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < end {
        let out = std::process::Command::new("ip")
            .args(["-6", "route", "show", "table", "local"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("ff00::/8 dev rs0") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("no IPv6 multicast route on rs0");
}
