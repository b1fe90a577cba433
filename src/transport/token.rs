//! The shared secret behind every session key.
//!
//! It comes from a file that only its owner can read, or from `RALLY_TUI_TOKEN`, never from
//! the command line (which any user on the host can read in `ps`). Local agents get a fresh
//! random token through their environment.

use std::path::Path;

use zeroize::Zeroizing;

use super::seal::MIN_TOKEN_LEN;

/// Where agents and the controller look for the token when no file is given.
pub const TOKEN_ENV: &str = "RALLY_TUI_TOKEN";

#[derive(Clone)]
pub struct Token(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("token file {path} can be read by other users (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: String, mode: u32 },
    #[error("the token{from} is {len} bytes; at least {MIN_TOKEN_LEN} are needed")]
    Short { from: String, len: usize },
    #[error("no token: give --token-file FILE or set {TOKEN_ENV}")]
    Missing,
}

impl Token {
    /// A fresh random token (hex, so it can travel in an environment variable).
    pub fn random() -> Token {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).expect("OS random number generator failed");
        Token(Zeroizing::new(hex(&raw).into_bytes()))
    }

    pub fn from_bytes(bytes: Vec<u8>, from: &str) -> Result<Token, TokenError> {
        let trimmed = Zeroizing::new(bytes.trim_ascii().to_vec());
        if trimmed.len() < MIN_TOKEN_LEN {
            return Err(TokenError::Short {
                from: from.to_string(),
                len: trimmed.len(),
            });
        }
        Ok(Token(trimmed))
    }

    /// Reads the token from a file that must not be readable by group or others.
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| TokenError::Read {
            path: shown.clone(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Permissions { path: shown, mode });
        }
        let bytes = std::fs::read(path).map_err(|source| TokenError::Read {
            path: shown.clone(),
            source,
        })?;
        Token::from_bytes(bytes, &format!(" in {shown}"))
    }

    /// `--token-file` if given, else `RALLY_TUI_TOKEN`.
    pub fn load(file: Option<&Path>) -> Result<Token, TokenError> {
        match file {
            Some(path) => Token::from_file(path),
            None => match std::env::var_os(TOKEN_ENV) {
                Some(v) => Token::from_bytes(v.into_encoded_bytes(), &format!(" in ${TOKEN_ENV}")),
                None => Err(TokenError::Missing),
            },
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The token as text, to hand to a child process through its environment.
    pub fn to_env_value(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn file_must_be_private_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Token::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            Token::from_file(&path).unwrap().as_bytes(),
            b"0123456789abcdef0123"
        );
        std::fs::write(&path, "short").unwrap();
        let e = Token::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("5 bytes"), "{e}");
    }

    #[test]
    fn random_tokens_differ() {
        assert_ne!(Token::random().as_bytes(), Token::random().as_bytes());
        assert_eq!(Token::random().as_bytes().len(), 64);
    }
}
