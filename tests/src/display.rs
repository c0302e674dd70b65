//! A virtual X display (Xvfb) for tests that open the navigator's real window. The project
//! installs Debian's `xvfb` itself when it is missing (as root); in CI (`CI` set) a display
//! that cannot be had fails the test, elsewhere the test is skipped with a loud line.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// A running Xvfb, stopped on drop.
#[derive(Debug)]
pub struct VirtualDisplay {
    child: Child,
    /// The `DISPLAY` value, e.g. `:3`.
    pub display: String,
}

fn xvfb_installed() -> bool {
    Command::new("Xvfb")
        .arg("-help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn install_xvfb() -> anyhow::Result<()> {
    eprintln!("installing xvfb (Debian package) for a virtual display …");
    let status = Command::new("sh")
        .arg("-c")
        .arg("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb libgl1-mesa-dri >/dev/null")
        .status()
        .context("run apt-get")?;
    if !status.success() {
        bail!("apt-get install xvfb failed ({status})");
    }
    Ok(())
}

impl VirtualDisplay {
    /// Starts one, installing Xvfb first if needed.
    pub fn start() -> anyhow::Result<Self> {
        if !xvfb_installed() {
            install_xvfb()?;
        }
        // -displayfd: Xvfb picks a free display number and writes it when it is ready.
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x900x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start Xvfb")?;
        let stdout = child.stdout.take().context("Xvfb stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let number = rx
            .recv_timeout(Duration::from_secs(20))
            .context("Xvfb did not report its display within 20 s")?;
        let number = number.trim();
        if number.is_empty() {
            let _ = child.kill();
            bail!("Xvfb exited before it had a display");
        }
        Ok(Self {
            child,
            display: format!(":{number}"),
        })
    }

    /// A display for `test`: `None` (after a loud SKIP line) when there is none outside CI;
    /// in CI a missing display fails the test.
    pub fn for_test(test: &str) -> Option<Self> {
        match Self::start() {
            Ok(d) => Some(d),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("{test} needs a virtual display (CI is set, so it may not skip): {e:#}")
            }
            Err(e) => {
                eprintln!("SKIP: {test}: no virtual display: {e:#}");
                None
            }
        }
    }
}

impl Drop for VirtualDisplay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
