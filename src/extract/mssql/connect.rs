//! Connecting to SQL Server: TLS, login, bounded waits, and errors that name the host and the
//! user but never the password.

use std::time::Duration;

use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::config::{MssqlEncrypt, MssqlSource};
use crate::error::{Error, Result};

/// A logged-in connection.
pub type SqlClient = Client<Compat<TcpStream>>;

/// SQL Server's "Login failed for user" message number.
const LOGIN_FAILED: u32 = 18456;

/// `host:port/database`, for messages and logs.
pub fn server_name(src: &MssqlSource) -> String {
    format!("{}:{}/{}", src.host, src.port, src.database)
}

fn password(src: &MssqlSource) -> Result<String> {
    std::env::var(&src.password_env).map_err(|_| Error::PasswordEnv {
        var: src.password_env.clone(),
        user: src.user.clone(),
    })
}

/// Remove the password from a message that came back from the driver or the server, should
/// one ever echo it.
fn redact(message: String, password: &str) -> String {
    if password.is_empty() {
        message
    } else {
        message.replace(password, "***")
    }
}

/// Connect and log in, within `connect_timeout_secs` for the whole of TCP, TLS and login.
pub async fn connect(src: &MssqlSource) -> Result<SqlClient> {
    let password = password(src)?;
    let mut config = Config::new();
    config.host(&src.host);
    config.port(src.port);
    config.database(&src.database);
    config.application_name("jcsync");
    config.authentication(AuthMethod::sql_server(&src.user, &password));
    config.encryption(match src.encrypt {
        MssqlEncrypt::Required => EncryptionLevel::Required,
        MssqlEncrypt::Off => EncryptionLevel::Off,
    });
    if src.trust_server_certificate {
        config.trust_cert();
    }
    let limit = Duration::from_secs(src.connect_timeout_secs);
    let connect_err = |message: String| Error::SqlConnect {
        host: src.host.clone(),
        port: src.port,
        message: redact(message, &password),
    };
    let attempt = async {
        let tcp = TcpStream::connect((src.host.as_str(), src.port))
            .await
            .map_err(|e| connect_err(format!("cannot reach the server: {e}")))?;
        let _ = tcp.set_nodelay(true);
        Client::connect(config, tcp.compat_write())
            .await
            .map_err(|e| match e {
                tiberius::error::Error::Server(t) if t.code() == LOGIN_FAILED => Error::SqlLogin {
                    host: src.host.clone(),
                    port: src.port,
                    user: src.user.clone(),
                    message: format!(
                        "the server refused the login (message {LOGIN_FAILED}): check the user and the password in ${}",
                        src.password_env
                    ),
                },
                tiberius::error::Error::Server(t) => Error::SqlLogin {
                    host: src.host.clone(),
                    port: src.port,
                    user: src.user.clone(),
                    message: redact(format!("message {}: {}", t.code(), t.message()), &password),
                },
                tiberius::error::Error::Tls(m) => connect_err(format!(
                    "TLS handshake failed: {m} (encrypt = \"required\" checks the certificate; \
                     set trust_server_certificate = true only for a server you trust with a self-signed certificate)"
                )),
                other => connect_err(other.to_string()),
            })
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(r) => r,
        Err(_) => Err(connect_err(format!(
            "no answer within {}s (source.connect_timeout_secs)",
            src.connect_timeout_secs
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(redact("bad hunter2 x".into(), "hunter2"), "bad *** x");
        assert_eq!(redact("x".into(), ""), "x");
    }
}
