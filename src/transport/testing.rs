//! A small protocol for the transport's own tests: JSON messages with just what the hub and
//! the link look at (a registration, a welcome, pulls and deliveries by id).

use serde::{Deserialize, Serialize};

use super::message::{Message, Protocol};

#[derive(Debug)]
pub struct Test;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Down {
    Welcome { session: String, results_port: u16 },
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Up {
    Register(Box<Register>),
    Ping { sent: f64 },
    Bye,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pull {
    pub ids: Vec<u64>,
}

/// In the raw, `id` (8 bytes LE) then the bytes: a frame's size is the payload's.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: u64,
    pub bytes: Vec<u8>,
}

macro_rules! json_message {
    ($($t:ty),*) => {$(
        impl Message for $t {
            type Error = serde_json::Error;

            fn to_plain(&self) -> Vec<u8> {
                serde_json::to_vec(self).unwrap_or_default()
            }

            fn from_plain(plain: &[u8]) -> Result<Self, serde_json::Error> {
                serde_json::from_slice(plain)
            }
        }
    )*};
}

json_message!(Down, Up, Pull);

impl Message for Delivery {
    type Error = String;

    fn to_plain(&self) -> Vec<u8> {
        let mut out = self.id.to_le_bytes().to_vec();
        out.extend_from_slice(&self.bytes);
        out
    }

    fn from_plain(plain: &[u8]) -> Result<Self, String> {
        let (id, bytes) = plain.split_at_checked(8).ok_or("short delivery")?;
        let id = u64::from_le_bytes(id.try_into().map_err(|_| "short delivery")?);
        Ok(Delivery {
            id,
            bytes: bytes.to_vec(),
        })
    }
}

impl Protocol for Test {
    const VERSION: u16 = 5;
    type Down = Down;
    type Up = Up;
    type Register = Register;
    type Pull = Pull;
    type Delivery = Delivery;

    fn register(register: &Register) -> Up {
        Up::Register(Box::new(register.clone()))
    }

    fn registration(message: Up) -> Option<Box<Register>> {
        match message {
            Up::Register(r) => Some(r),
            _ => None,
        }
    }

    fn welcome(message: &Down) -> Option<(u16, &str)> {
        match message {
            Down::Welcome {
                session,
                results_port,
            } => Some((*results_port, session)),
            Down::Shutdown => None,
        }
    }

    fn pulled(pull: &Pull) -> &[u64] {
        &pull.ids
    }

    fn delivered(delivery: &Delivery) -> u64 {
        delivery.id
    }
}
