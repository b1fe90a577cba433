//! rally-tui's messages as the transport carries them: [`Rally`] tells the generic hub and
//! link ([`crate::transport`]) how each of [`super::protocol`]'s messages becomes a sealed
//! frame's plaintext, and the few facts they enforce (registration first, results only as
//! answers to pulls). [`hub`] and [`link`] name the transport's types for this protocol with
//! the names the controller and the agent use.

use super::protocol::{
    self, DecodeError, Delivery, PROTOCOL_VERSION, Pull, Register, ToAgent, ToController,
};
use crate::transport::message::{Message, Protocol};

/// The controller <-> agent protocol of distributed runs.
#[derive(Debug)]
pub struct Rally;

impl Protocol for Rally {
    const VERSION: u16 = PROTOCOL_VERSION;
    type Down = ToAgent;
    type Up = ToController;
    type Register = Register;
    type Pull = Pull;
    type Delivery = Delivery;

    fn register(register: &Register) -> ToController {
        ToController::Register(Box::new(register.clone()))
    }

    fn registration(message: ToController) -> Option<Box<Register>> {
        match message {
            ToController::Register(r) => Some(r),
            _ => None,
        }
    }

    fn welcome(message: &ToAgent) -> Option<(u16, &str)> {
        match message {
            ToAgent::Welcome {
                results_port,
                session,
                ..
            } => Some((*results_port, session)),
            _ => None,
        }
    }

    fn pulled(pull: &Pull) -> &[u64] {
        let Pull::Chunks { ids } = pull;
        ids
    }

    fn delivered(delivery: &Delivery) -> u64 {
        match delivery {
            Delivery::Chunk { id, .. } | Delivery::Missing { id, .. } => *id,
        }
    }
}

impl Message for ToAgent {
    type Error = DecodeError;

    fn to_plain(&self) -> Vec<u8> {
        protocol::encode_json(self)
    }

    fn from_plain(plain: &[u8]) -> Result<Self, DecodeError> {
        protocol::decode_json(plain)
    }
}

impl Message for ToController {
    type Error = DecodeError;

    fn to_plain(&self) -> Vec<u8> {
        self.encode()
    }

    fn from_plain(plain: &[u8]) -> Result<Self, DecodeError> {
        ToController::decode(plain)
    }
}

impl Message for Pull {
    type Error = DecodeError;

    fn to_plain(&self) -> Vec<u8> {
        protocol::encode_json(self)
    }

    fn from_plain(plain: &[u8]) -> Result<Self, DecodeError> {
        protocol::decode_json(plain)
    }
}

impl Message for Delivery {
    type Error = DecodeError;

    fn to_plain(&self) -> Vec<u8> {
        self.encode()
    }

    fn from_plain(plain: &[u8]) -> Result<Self, DecodeError> {
        Delivery::decode(plain)
    }
}

/// The controller's end, for this protocol.
pub mod hub {
    use super::Rally;
    use crate::transport::hub as generic;

    pub use generic::{COMPLAINT_WINDOW, ConnId, TransportError, split_endpoint};

    pub type Hub = generic::Hub<Rally>;
    pub type HubEvent = generic::HubEvent<Rally>;
    pub type Inbound = generic::Inbound<Rally>;
}

/// An agent's end, for this protocol.
pub mod link {
    use super::Rally;
    use crate::transport::link as generic;

    pub use generic::LinkError;

    pub type Link = generic::Link<Rally>;
    pub type LinkSender = generic::LinkSender<Rally>;
    pub type Inbound = generic::Inbound<Rally>;
}
