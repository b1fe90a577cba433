//! What the transport needs to know of the messages it carries, and nothing more.
//!
//! The hub and the link seal, sequence, bound and route frames; what is inside a frame is the
//! application's (for rally-tui's runs, the controller's and agents' protocol). An
//! application describes its messages through [`Protocol`]: how each kind turns into a
//! sealed frame's plaintext and back ([`Message`]), and the few facts the transport enforces itself: the version a hello
//! must carry, that a session's first sealed message is a registration, where the welcome
//! says the results channel is, and which results a pull asks for (results are accepted only
//! as answers to pulls, see [`super::hub`]).

use std::fmt;

/// One kind of message as the plaintext of a sealed frame.
pub trait Message: Sized + Send + fmt::Debug + 'static {
    /// Why a plaintext is not one of these; said in the log line that drops it.
    type Error: fmt::Display;

    fn to_plain(&self) -> Vec<u8>;

    fn from_plain(plain: &[u8]) -> Result<Self, Self::Error>;
}

/// The messages of an application protocol, by channel and direction, and what the transport
/// must know of them. Implemented by a marker type that the hub and link are generic over.
pub trait Protocol: fmt::Debug + Send + Sync + 'static {
    /// Carried in the hello; a peer speaking another version is refused at the handshake.
    const VERSION: u16;
    /// Control channel, controller -> agent.
    type Down: Message;
    /// Control channel, agent -> controller.
    type Up: Message;
    /// What an agent tells about itself; the first sealed message of every session.
    type Register: Clone + Send + fmt::Debug + 'static;
    /// Results channel, controller -> agent: asks for results by id.
    type Pull: Message;
    /// Results channel, agent -> controller: one result answering a pull.
    type Delivery: Message;

    /// The registration as the message that carries it.
    fn register(register: &Self::Register) -> Self::Up;
    /// The registration in `message`, if that is what it is.
    fn registration(message: Self::Up) -> Option<Box<Self::Register>>;
    /// The welcome's results port and attach token, if `message` is the welcome.
    fn welcome(message: &Self::Down) -> Option<(u16, &str)>;
    /// The ids of the results `pull` asks for.
    fn pulled(pull: &Self::Pull) -> &[u64];
    /// The id of the result `delivery` carries (answering a pull).
    fn delivered(delivery: &Self::Delivery) -> u64;
}
