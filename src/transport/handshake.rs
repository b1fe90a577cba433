//! The clear handshake that opens a session, before either side has keys: the agent's hello
//! (its protocol version and nonce), the controller's challenge (its nonce) or refusal, and
//! the results connection's attach. Everything after it is one sealed frame per message
//! ([`super::seal`]), whose contents belong to the application ([`super::message`]).

/// First frame of the clear handshake, agent -> controller, on either channel.
pub const HELLO: &[u8] = b"RTUI-HELLO";
/// Controller -> agent: the controller's session nonce.
pub const CHALLENGE: &[u8] = b"RTUI-CHALLENGE";
/// Controller -> agent: why the session was refused (clear text, for the agent's log).
pub const REFUSE: &[u8] = b"RTUI-REFUSE";
/// Results channel, agent -> controller: the session this connection belongs to.
pub const ATTACH: &[u8] = b"RTUI-ATTACH";

/// The clear first message of a session: `[HELLO, version (u16 BE), agent nonce (16)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    pub nonce: [u8; 16],
}

impl Hello {
    pub fn frames(&self) -> Vec<Vec<u8>> {
        vec![
            HELLO.to_vec(),
            self.version.to_be_bytes().to_vec(),
            self.nonce.to_vec(),
        ]
    }

    /// `None` when the frames are not a hello at all; `Err` when they are one we cannot use.
    pub fn parse(frames: &[&[u8]]) -> Option<Result<Hello, String>> {
        if frames.first() != Some(&HELLO) {
            return None;
        }
        Some((|| {
            let [_, version, nonce] = frames else {
                return Err(format!("hello has {} frames, expected 3", frames.len()));
            };
            let version = u16::from_be_bytes(
                (*version)
                    .try_into()
                    .map_err(|_| "hello version is not 2 bytes".to_string())?,
            );
            let nonce: [u8; 16] = (*nonce)
                .try_into()
                .map_err(|_| "hello nonce is not 16 bytes".to_string())?;
            Ok(Hello { version, nonce })
        })())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trip_and_rejections() {
        let h = Hello {
            version: 2,
            nonce: [7; 16],
        };
        let frames = h.frames();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        assert_eq!(Hello::parse(&refs).unwrap().unwrap(), h);
        assert!(Hello::parse(&[b"GET / HTTP/1.1"]).is_none());
        assert!(Hello::parse(&[HELLO, b"x"]).unwrap().is_err());
        assert!(Hello::parse(&[HELLO, b"xyz", &[0; 16]]).unwrap().is_err());
        assert!(Hello::parse(&[HELLO, &[0, 1], &[0; 15]]).unwrap().is_err());
    }
}
