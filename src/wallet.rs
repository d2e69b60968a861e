//! Who signs a trader's transactions: a private key (`--private-key` / `KEYMARKET_PRIVATE_KEY`),
//! an encrypted JSON keystore (Foundry's and geth's format), or on a dev chain one of anvil's
//! accounts. anvil's well-known keys are refused on any chain that is not a dev chain.

use std::path::PathBuf;

use alloy::signers::local::{MnemonicBuilder, PrivateKeySigner, coins_bip39::English};
use clap::Args;
use eyre::{Result, bail, eyre};

/// The mnemonic of anvil's (and Hardhat's) dev accounts: public knowledge.
const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";
/// How many of anvil's accounts are recognised (and refused off dev chains).
const DEV_ACCOUNTS: u32 = 100;
/// Chain ids of local dev chains (anvil/Hardhat, geth --dev/Ganache).
pub(crate) const DEV_CHAINS: [u64; 2] = [31_337, 1_337];

/// The signer of a trader's transactions.
#[derive(Args, Debug, Clone)]
pub(crate) struct SignerArgs {
    /// The account's private key (0x hex).
    #[arg(
        long,
        env = "KEYMARKET_PRIVATE_KEY",
        hide_env_values = true,
        conflicts_with_all = ["keystore", "dev_account"]
    )]
    pub(crate) private_key: Option<String>,
    /// An encrypted JSON keystore (as `cast wallet new` or geth write).
    #[arg(long, conflicts_with = "dev_account")]
    pub(crate) keystore: Option<PathBuf>,
    /// The keystore's password, from this file (otherwise asked for, without echo).
    #[arg(long, requires = "keystore")]
    pub(crate) password_file: Option<PathBuf>,
    /// On a dev chain: anvil's account number N (0 = the first).
    #[arg(long)]
    pub(crate) dev_account: Option<u32>,
}

impl SignerArgs {
    /// Whether any signer was given.
    pub(crate) fn is_given(&self) -> bool {
        self.private_key.is_some() || self.keystore.is_some() || self.dev_account.is_some()
    }

    /// The signer, checked against the chain: a dev key only on a dev chain.
    pub(crate) fn signer(&self, chain_id: u64) -> Result<PrivateKeySigner> {
        let signer = if let Some(key) = &self.private_key {
            key.trim().parse::<PrivateKeySigner>().map_err(|_| {
                eyre!("--private-key is not a private key (64 hex digits, 0x optional)")
            })?
        } else if let Some(path) = &self.keystore {
            let password = match &self.password_file {
                Some(p) => std::fs::read_to_string(p)
                    .map_err(|e| eyre!("cannot read the password file {}: {e}", p.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
                None => ask_password(&format!("password for {}: ", path.display()))
                    .map_err(|e| {
                        eyre!(
                            "cannot ask for the password of {} (no terminal? {e}); pass --password-file FILE",
                            path.display()
                        )
                    })?,
            };
            if !path.exists() {
                bail!("keystore {} does not exist", path.display());
            }
            PrivateKeySigner::decrypt_keystore(path, password).map_err(|e| {
                eyre!(
                    "cannot open keystore {}: wrong password or not a keystore ({e})",
                    path.display()
                )
            })?
        } else if let Some(n) = self.dev_account {
            if !DEV_CHAINS.contains(&chain_id) {
                bail!(
                    "--dev-account is for local dev chains (chain id 31337 or 1337); this chain's id is {chain_id}"
                );
            }
            dev_signer(n)?
        } else {
            bail!(
                "no signer: pass --private-key (or KEYMARKET_PRIVATE_KEY), --keystore FILE, or on a dev chain --dev-account N"
            );
        };
        if !DEV_CHAINS.contains(&chain_id) && is_dev_key(&signer)? {
            bail!(
                "{} is one of anvil's public dev accounts: anyone can take its funds, so it is refused on chain {chain_id} (not a dev chain)",
                signer.address()
            );
        }
        Ok(signer)
    }
}

/// anvil's dev account `n`.
pub(crate) fn dev_signer(n: u32) -> Result<PrivateKeySigner> {
    MnemonicBuilder::<English>::default()
        .phrase(DEV_MNEMONIC)
        .index(n)?
        .build()
        .map_err(|e| eyre!("deriving dev account {n}: {e}"))
}

fn is_dev_key(signer: &PrivateKeySigner) -> Result<bool> {
    for n in 0..DEV_ACCOUNTS {
        if dev_signer(n)?.address() == signer.address() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Asks for a password on the terminal (`/dev/tty`) without echo. Echo is turned off *before* the
/// prompt shows, so that nothing typed once the prompt is visible — however fast: a script, a
/// paste — is ever echoed (a prompt shown first, then echo turned off, leaves a window in which
/// the terminal echoes it). The terminal's settings are restored however the read ends.
fn ask_password(prompt: &str) -> std::io::Result<String> {
    use std::{
        io::{BufRead, Write},
        os::fd::AsRawFd,
    };
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let fd = tty.as_raw_fd();
    let mut saved = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: `fd` is an open file descriptor; tcgetattr only writes the termios it is given.
    if unsafe { libc::tcgetattr(fd, saved.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: tcgetattr succeeded, so the termios is initialised.
    let saved = unsafe { saved.assume_init() };
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    // The Enter still moves to the next line.
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: as above; tcsetattr only reads the termios it is given.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    /// Puts the terminal's settings back when dropped.
    struct Restore(std::os::fd::RawFd, libc::termios);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: the descriptor is still open (the file outlives this guard).
            unsafe { libc::tcsetattr(self.0, libc::TCSANOW, &self.1) };
        }
    }
    let _restore = Restore(fd, saved);
    (&tty).write_all(prompt.as_bytes())?;
    (&tty).flush()?;
    let mut line = String::new();
    std::io::BufReader::new(&tty).read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_accounts_are_anvils() {
        // anvil's first account.
        assert_eq!(
            dev_signer(0).unwrap().address().to_string(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
        let args = SignerArgs {
            private_key: Some(crate::cli::ANVIL_KEY_0.into()),
            keystore: None,
            password_file: None,
            dev_account: None,
        };
        assert!(args.signer(31_337).is_ok());
        let refused = args.signer(8_453).unwrap_err().to_string();
        assert!(refused.contains("public dev accounts"), "{refused}");
        let dev = SignerArgs {
            private_key: None,
            dev_account: Some(1),
            ..args
        };
        assert!(dev.signer(1).is_err());
    }
}
