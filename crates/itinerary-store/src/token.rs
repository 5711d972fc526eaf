//! Bearer and feed tokens: 256 random bits shown once, stored only as their SHA-256.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A token as handed out: the secret, and the hash kept in the database.
#[derive(Debug)]
pub struct Token {
    pub secret: String,
    pub hash: String,
}

impl Token {
    /// A fresh token; `prefix` says what it opens (`itc_` a coordinator, `itf_` a feed).
    pub fn generate(prefix: &str) -> Token {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = format!("{prefix}{}", hex::encode(bytes));
        let hash = hash_token(&secret);
        Token { secret, hash }
    }
}

/// What the database stores of a token. A fast hash is right here: the token has 256 bits of
/// entropy, so there is nothing to guess, and every request hashes one.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}
