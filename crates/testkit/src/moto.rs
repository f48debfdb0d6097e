//! A local AWS for tests, demos and the local stack: moto in server mode on 127.0.0.1.
//! (`scripts/setup` installs it into the repository's `.venv`.) Product code never knows it
//! is talking to moto: it gets the same standard configuration a real deployment gets.
//!
//! moto runs through `moto/launcher.py`, which fills what moto lacks before the server starts
//! (AssumeRole's trust check; see the file).

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("moto_server not found in {venv} or on PATH: run scripts/setup")]
    NotInstalled { venv: String },
    #[error("no python beside {0} to run the moto launcher")]
    NoPython(String),
    #[error("starting moto_server: {0}")]
    Spawn(std::io::Error),
    #[error("moto_server did not answer on 127.0.0.1:{port} within {waited:?}")]
    NotReady { port: u16, waited: Duration },
}

/// The account moto answers as, unless told otherwise.
pub const ACCOUNT_ID: &str = "123456789012";
pub const REGION: &str = "us-east-1";

pub struct Moto {
    child: Option<Child>,
    pub port: u16,
    exe: PathBuf,
}

/// The repository's `.venv` first (this crate is `crates/testkit`), then `PATH`.
fn find_server() -> Result<PathBuf, MotoError> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    if venv.exists() {
        return Ok(venv);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("moto_server"))
        .find(|p| p.exists())
        .ok_or(MotoError::NotInstalled {
            venv: venv.display().to_string(),
        })
}

fn free_port() -> Result<u16, MotoError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(MotoError::Spawn)?;
    l.local_addr().map(|a| a.port()).map_err(MotoError::Spawn)
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers.
    pub fn start() -> Result<Moto, MotoError> {
        let mut m = Moto {
            child: None,
            port: free_port()?,
            exe: find_server()?,
        };
        m.spawn()?;
        Ok(m)
    }

    fn spawn(&mut self) -> Result<(), MotoError> {
        // The python of moto_server's environment runs the launcher.
        let python = self
            .exe
            .parent()
            .map(|d| d.join("python3"))
            .filter(|p| p.exists())
            .ok_or_else(|| MotoError::NoPython(self.exe.display().to_string()))?;
        let launcher = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("moto/launcher.py");
        let child = Command::new(python)
            .arg(launcher)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // moto must not pin one account: assumed-role calls are then scoped to their account.
            .env_remove("MOTO_ACCOUNT_ID")
            .spawn()
            .map_err(MotoError::Spawn)?;
        self.child = Some(child);
        let waited = Duration::from_secs(30);
        let deadline = Instant::now() + waited;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(MotoError::NotReady {
                    port: self.port,
                    waited,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills moto (all its state goes with it), as an outage would.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts moto again on the same port, empty.
    pub fn restart(&mut self) -> Result<(), MotoError> {
        self.stop();
        self.spawn()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The standard environment a process needs to use this moto.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// An SDK configuration for this moto, the same as `peregrine_aws::sdk_config` would build
    /// from [`Moto::env`], without touching this process's environment.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .endpoint_url(self.endpoint())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_credential_types::Credentials::new(
                "test", "test", None, None, "moto",
            ))
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
