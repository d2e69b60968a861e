//! The one way the tests drive a real browser: a node script under tests/browser/ that launches
//! headless Chromium (tests/browser/chromium.mjs: playwright-core and the system's chromium,
//! both installed by scripts/setup.sh), talked to line by line over its stdin and stdout. Its
//! stderr is the test's. A script still running when its test ends (a failed assertion) is
//! killed.

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

/// A browser script running.
pub(crate) struct BrowserScript {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl BrowserScript {
    /// Starts `node tests/browser/<script> ARGS…` in the repository's root.
    pub(crate) fn start(script: &str, args: &[&str]) -> Self {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut child = Command::new("node")
            .arg(format!("{root}/tests/browser/{script}"))
            .args(args)
            .current_dir(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (scripts/setup.sh installs playwright-core and chromium)");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// The next line it prints, trimmed; empty once it has closed its stdout. Waits on the
    /// test's thread (a multi-thread runtime's tasks go on meanwhile).
    pub(crate) fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::task::block_in_place(|| self.stdout.read_line(&mut line)).unwrap();
        line.trim().to_string()
    }

    /// Sends it a line.
    pub(crate) fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("its stdin is open");
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Closes its stdin, reads the rest of what it prints and waits for it to end: whether it
    /// succeeded, and that rest, trimmed.
    pub(crate) fn finish(mut self) -> (bool, String) {
        drop(self.stdin.take());
        let mut rest = String::new();
        tokio::task::block_in_place(|| self.stdout.read_to_string(&mut rest)).unwrap();
        let status = tokio::task::block_in_place(|| self.child.wait()).unwrap();
        (status.success(), rest.trim().to_string())
    }
}

impl Drop for BrowserScript {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
