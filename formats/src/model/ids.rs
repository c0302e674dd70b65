//! Identities and versions: each one a newtype that can only hold a valid value.
//!
//! Parsing accepts what operators type (colon-separated or bare hex WWNs, `02-15` versions) and
//! every error says what was wrong and what a valid value looks like.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that does not parse as the identity it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct InvalidId {
    /// What was being parsed ("WWPN", "MAC address", …).
    pub kind: &'static str,
    /// The rejected text.
    pub value: String,
    /// Why, and what a valid value looks like.
    pub reason: String,
}

impl InvalidId {
    fn new(kind: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.chars().take(80).collect(),
            reason: reason.into(),
        }
    }
}

/// Serializes through `Display` and deserializes through `FromStr`.
macro_rules! string_serde {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Parses `count` bytes written as `aa:bb:…`, `aa-bb-…` or bare hex.
fn parse_hex_bytes<const N: usize>(kind: &'static str, text: &str) -> Result<[u8; N], InvalidId> {
    let trimmed = text.trim();
    let digits: String = if trimmed.contains(':') || trimmed.contains('-') {
        let parts: Vec<&str> = trimmed.split([':', '-']).collect();
        if parts.len() != N || parts.iter().any(|p| p.len() != 2) {
            return Err(InvalidId::new(
                kind,
                text,
                format!("expected {N} two-digit hex bytes separated by ':'"),
            ));
        }
        parts.concat()
    } else {
        trimmed.strip_prefix("0x").unwrap_or(trimmed).to_owned()
    };
    if !digits.is_ascii() {
        return Err(InvalidId::new(
            kind,
            text,
            "only hex digits 0-9, a-f and ':' are allowed",
        ));
    }
    if digits.len() != N * 2 {
        return Err(InvalidId::new(
            kind,
            text,
            format!("expected {} hex digits, found {}", N * 2, digits.len()),
        ));
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = &digits[i * 2..i * 2 + 2];
        *byte = u8::from_str_radix(pair, 16).map_err(|_| {
            InvalidId::new(kind, text, format!("{pair:?} is not a hex byte (0-9, a-f)"))
        })?;
    }
    Ok(out)
}

fn write_colon_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            f.write_str(":")?;
        }
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

macro_rules! wwn_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u64);

        impl $name {
            /// From the 64-bit value. A WWN of all zeros is not a valid port or node name.
            pub fn new(value: u64) -> Result<Self, InvalidId> {
                if value == 0 {
                    return Err(InvalidId::new($kind, "00:00:00:00:00:00:00:00", "an all-zero WWN is reserved"));
                }
                Ok(Self(value))
            }
            /// The 64-bit value.
            pub fn get(self) -> u64 {
                self.0
            }
            /// The value with `offset` added (for names generated from a pool).
            pub fn offset(self, offset: u64) -> Result<Self, InvalidId> {
                self.0
                    .checked_add(offset)
                    .ok_or_else(|| InvalidId::new($kind, &self.to_string(), "pool overflows 64 bits"))
                    .and_then(Self::new)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let bytes = parse_hex_bytes::<8>($kind, s)?;
                Self::new(u64::from_be_bytes(bytes)).map_err(|e| InvalidId { value: s.to_owned(), ..e })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_colon_hex(f, &self.0.to_be_bytes())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        string_serde!($name);
    };
}

wwn_type!(
    /// World Wide Port Name of a (virtual) FC HBA port, e.g. `50:06:0e:80:10:2a:3c:00`.
    Wwpn,
    "WWPN"
);
wwn_type!(
    /// World Wide Node Name of a (virtual) FC HBA.
    Wwnn,
    "WWNN"
);

/// A 48-bit Ethernet MAC address, e.g. `00:00:87:01:10:02`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// Hitachi's OUI, used for logical MACs derived from the VNIC System No.
    const LOGICAL_OUI: [u8; 3] = [0x00, 0x00, 0x87];

    /// From six bytes. Multicast and all-zero addresses are refused: a vNIC needs a unicast MAC.
    pub fn new(bytes: [u8; 6]) -> Result<Self, InvalidId> {
        let shown = Self(bytes).to_string();
        if bytes == [0; 6] {
            return Err(InvalidId::new(
                "MAC address",
                &shown,
                "all-zero MAC is not assignable",
            ));
        }
        if bytes[0] & 1 == 1 {
            return Err(InvalidId::new(
                "MAC address",
                &shown,
                "multicast bit set; a vNIC needs a unicast MAC (first byte even)",
            ));
        }
        Ok(Self(bytes))
    }

    /// The logical MAC the HVM derives for vNIC `nic_index` of LPAR `lpar` from its VNIC System
    /// No.: OUI 00:00:87, then 12 bits of system number, 4 bits of vNIC index, 8 bits of LPAR.
    pub fn logical(system_no: VnicSystemNo, lpar: LparNumber, nic_index: u8) -> Self {
        let sys = system_no.get();
        Self([
            Self::LOGICAL_OUI[0],
            Self::LOGICAL_OUI[1],
            Self::LOGICAL_OUI[2],
            (sys >> 4) as u8,
            (((sys & 0xF) as u8) << 4) | (nic_index & 0xF),
            lpar.get(),
        ])
    }

    /// The six bytes.
    pub fn bytes(self) -> [u8; 6] {
        self.0
    }
}

impl FromStr for MacAddr {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(parse_hex_bytes::<6>("MAC address", s)?)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_colon_hex(f, &self.0)
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

string_serde!(MacAddr);

/// The HVM's VNIC System No. (1–4095), the seed from which logical MACs are derived.
/// Two HVMs sharing a network segment must not share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct VnicSystemNo(u16);

impl VnicSystemNo {
    /// Largest VNIC System No. (with the expansion the seed describes).
    pub const MAX: u16 = 4095;
    /// From a number in 1..=4095.
    pub fn new(n: u16) -> Result<Self, InvalidId> {
        if n == 0 || n > Self::MAX {
            return Err(InvalidId::new(
                "VNIC System No.",
                &n.to_string(),
                "must be between 1 and 4095",
            ));
        }
        Ok(Self(n))
    }
    /// The number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for VnicSystemNo {
    type Error = InvalidId;
    fn try_from(n: u16) -> Result<Self, Self::Error> {
        Self::new(n)
    }
}
impl From<VnicSystemNo> for u16 {
    fn from(n: VnicSystemNo) -> u16 {
        n.0
    }
}

/// An LPAR number on an HVM, 1 to [`LparNumber::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct LparNumber(u8);

impl LparNumber {
    /// Most LPARs one HVM holds.
    pub const MAX: u8 = 60;
    /// From a number in 1..=60.
    pub fn new(n: u8) -> Result<Self, InvalidId> {
        if n == 0 || n > Self::MAX {
            return Err(InvalidId::new(
                "LPAR number",
                &n.to_string(),
                format!("must be between 1 and {}", Self::MAX),
            ));
        }
        Ok(Self(n))
    }
    /// The number.
    pub fn get(self) -> u8 {
        self.0
    }
    /// Every valid LPAR number, youngest first.
    pub fn all() -> impl Iterator<Item = LparNumber> {
        (1..=Self::MAX).map(LparNumber)
    }
}

impl TryFrom<u8> for LparNumber {
    type Error = InvalidId;
    fn try_from(n: u8) -> Result<Self, Self::Error> {
        Self::new(n)
    }
}
impl From<LparNumber> for u8 {
    fn from(n: LparNumber) -> u8 {
        n.0
    }
}
impl FromStr for LparNumber {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n: u8 = s.trim().parse().map_err(|_| {
            InvalidId::new(
                "LPAR number",
                s,
                format!("expected a number 1–{}", Self::MAX),
            )
        })?;
        Self::new(n)
    }
}
impl fmt::Display for LparNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An LPAR name: 1–31 characters of `A-Z a-z 0-9 _ -`, starting with a letter or digit, and never
/// the HVM's placeholder `NO_NAME` (an LPAR with that name cannot migrate).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LparName(String);

impl LparName {
    /// Longest name the HVM stores.
    pub const MAX_LEN: usize = 31;
    /// The placeholder name the HVM gives an unnamed LPAR.
    pub const PLACEHOLDER: &'static str = "NO_NAME";
    /// Why the placeholder is refused (part of the parse error, so a server that only sees the
    /// error text can still answer with the catalogue's `NO_NAME` row).
    pub const PLACEHOLDER_REFUSED: &'static str =
        "NO_NAME is the HVM's placeholder; give the LPAR a real name";

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LparName {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let kind = "LPAR name";
        if s.is_empty() {
            return Err(InvalidId::new(kind, s, "a name is required"));
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(InvalidId::new(
                kind,
                s,
                format!("longer than {} characters", Self::MAX_LEN),
            ));
        }
        if s.eq_ignore_ascii_case(Self::PLACEHOLDER) {
            return Err(InvalidId::new(kind, s, Self::PLACEHOLDER_REFUSED));
        }
        if let Some(bad) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(InvalidId::new(
                kind,
                s,
                format!("character {bad:?} is not allowed; use letters, digits, '_' and '-'"),
            ));
        }
        if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(InvalidId::new(kind, s, "must start with a letter or digit"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for LparName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for LparName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LparName({:?})", self.0)
    }
}
string_serde!(LparName);

/// A firmware version as the seed writes it: `MM-mm` (HVM firmware `02-15`, `59-73`; EFI/BIOS
/// `10-46`). Ordered numerically; the first number is the *major* version the compatibility rules
/// compare.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FirmwareVersion {
    major: u16,
    minor: u16,
}

impl FirmwareVersion {
    /// Builds `major-minor`.
    pub fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }
    /// The major version (the part before the dash).
    pub fn major(self) -> u16 {
        self.major
    }
    /// The minor version (after the dash).
    pub fn minor(self) -> u16 {
        self.minor
    }
}

impl FromStr for FirmwareVersion {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let kind = "firmware version";
        let (major, minor) = s.trim().split_once('-').ok_or_else(|| {
            InvalidId::new(kind, s, "expected MAJOR-MINOR with a dash, e.g. 02-15")
        })?;
        let number = |part: &str| -> Result<u16, InvalidId> {
            if part.is_empty() || part.len() > 4 || !part.chars().all(|c| c.is_ascii_digit()) {
                return Err(InvalidId::new(
                    kind,
                    s,
                    format!("{part:?} is not 1–4 decimal digits; expected e.g. 02-15"),
                ));
            }
            part.parse()
                .map_err(|_| InvalidId::new(kind, s, "number out of range"))
        };
        Ok(Self {
            major: number(major)?,
            minor: number(minor)?,
        })
    }
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}-{:02}", self.major, self.minor)
    }
}
impl fmt::Debug for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FirmwareVersion({self})")
    }
}
string_serde!(FirmwareVersion);

/// A shared NIC segment: PCI slot (or onboard) number plus port letter, e.g. `1a`, `2b`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NicSegment {
    slot: u8,
    port: u8,
}

impl NicSegment {
    /// Segment of port index `port` (0 = `a`) on `slot`.
    pub fn new(slot: u8, port: u8) -> Result<Self, InvalidId> {
        if port >= 26 || slot > 99 {
            return Err(InvalidId::new(
                "NIC segment",
                &format!("{slot}/{port}"),
                "slot 0–99 and port a–z",
            ));
        }
        Ok(Self { slot, port })
    }
    /// PCI slot number.
    pub fn slot(self) -> u8 {
        self.slot
    }
    /// Port index (0 = `a`).
    pub fn port(self) -> u8 {
        self.port
    }
}

impl FromStr for NicSegment {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s_trim = s.trim();
        let split = s_trim
            .find(|c: char| !c.is_ascii_digit())
            .filter(|&i| i > 0 && i + 1 == s_trim.len());
        let Some(i) = split else {
            return Err(InvalidId::new(
                "NIC segment",
                s,
                "expected a slot number and a port letter, e.g. 1a",
            ));
        };
        let slot: u8 = s_trim[..i]
            .parse()
            .map_err(|_| InvalidId::new("NIC segment", s, "slot number out of range"))?;
        let letter = s_trim.as_bytes()[i].to_ascii_lowercase();
        if !letter.is_ascii_lowercase() {
            return Err(InvalidId::new(
                "NIC segment",
                s,
                "port must be a letter a–z",
            ));
        }
        Self::new(slot, letter - b'a')
    }
}

impl fmt::Display for NicSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.slot, char::from(b'a' + self.port))
    }
}
impl fmt::Debug for NicSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NicSegment({self})")
    }
}
string_serde!(NicSegment);

/// A physical FC port: PCI slot and port number, written `slot/port` (e.g. `3/0`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FcPort {
    /// PCI slot of the FC HBA card.
    pub slot: u8,
    /// Port on the card.
    pub port: u8,
}

impl FromStr for FcPort {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidId::new("FC port", s, "expected SLOT/PORT, e.g. 3/0");
        let (slot, port) = s.trim().split_once('/').ok_or_else(bad)?;
        Ok(Self {
            slot: slot.parse().map_err(|_| bad())?,
            port: port.parse().map_err(|_| bad())?,
        })
    }
}
impl fmt::Display for FcPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.slot, self.port)
    }
}
impl fmt::Debug for FcPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FcPort({self})")
    }
}
string_serde!(FcPort);

/// A port of a storage array: its controller's digit and the port's letter, e.g. `0A` or `1B`
/// (the `0 A` of the seed's `auhgwwn … -permhg 0 A`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArrayPort {
    controller: u8,
    letter: u8,
}

impl ArrayPort {
    /// Controller `controller` (0–9), port `letter` (A–Z).
    pub fn new(controller: u8, letter: char) -> Result<Self, InvalidId> {
        format!("{controller}{letter}").parse()
    }
    /// The controller's number.
    pub fn controller(self) -> u8 {
        self.controller
    }
    /// The port's letter.
    pub fn letter(self) -> char {
        char::from(self.letter)
    }
}

impl FromStr for ArrayPort {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            InvalidId::new(
                "array port",
                s,
                "expected a controller digit and a port letter, e.g. 0A or 1B",
            )
        };
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = compact.as_bytes();
        match bytes {
            [digit, letter] if digit.is_ascii_digit() && letter.is_ascii_alphabetic() => Ok(Self {
                controller: digit - b'0',
                letter: letter.to_ascii_uppercase(),
            }),
            _ => Err(bad()),
        }
    }
}
impl fmt::Display for ArrayPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.controller, char::from(self.letter))
    }
}
impl fmt::Debug for ArrayPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArrayPort({self})")
    }
}
string_serde!(ArrayPort);

/// A host group's number on its array port, 0–254, shown with three digits (`001`); group 000
/// is the port's default group.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct HostGroupNumber(u8);

impl HostGroupNumber {
    /// The largest host group number.
    pub const MAX: u8 = 254;
    /// From 0..=254.
    pub fn new(n: u8) -> Result<Self, InvalidId> {
        if n > Self::MAX {
            return Err(InvalidId::new(
                "host group number",
                &n.to_string(),
                "host group numbers run from 000 to 254",
            ));
        }
        Ok(Self(n))
    }
    /// The number.
    pub fn get(self) -> u8 {
        self.0
    }
}
impl TryFrom<u8> for HostGroupNumber {
    type Error = InvalidId;
    fn try_from(n: u8) -> Result<Self, Self::Error> {
        Self::new(n)
    }
}
impl From<HostGroupNumber> for u8 {
    fn from(n: HostGroupNumber) -> u8 {
        n.0
    }
}
impl FromStr for HostGroupNumber {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n: u8 = s.trim().parse().map_err(|_| {
            InvalidId::new(
                "host group number",
                s,
                "expected a number from 000 to 254, e.g. 001",
            )
        })?;
        Self::new(n)
    }
}
impl fmt::Display for HostGroupNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.0)
    }
}
impl fmt::Debug for HostGroupNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostGroupNumber({self})")
    }
}

/// The name of a storage array: letters, digits, `-` and `_`, at most 32 characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArrayName(String);

impl ArrayName {
    /// The longest name accepted.
    pub const MAX_LEN: usize = 32;
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for ArrayName {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(InvalidId::new(
                "array name",
                s,
                format!(
                    "use 1 to {} letters, digits, '-' or '_', e.g. ams1",
                    Self::MAX_LEN
                ),
            ));
        }
        Ok(Self(s.to_owned()))
    }
}
impl fmt::Display for ArrayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for ArrayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArrayName({self})")
    }
}
string_serde!(ArrayName);

/// Where an FC port's cable ends: a port of a storage array, written `ARRAY:PORT` (e.g.
/// `ams1:0A`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageCable {
    /// The array.
    pub array: ArrayName,
    /// Its port.
    pub port: ArrayPort,
}
impl FromStr for StorageCable {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (array, port) = s.trim().split_once(':').ok_or_else(|| {
            InvalidId::new("storage cable", s, "expected ARRAY:PORT, e.g. ams1:0A")
        })?;
        Ok(Self {
            array: array.parse()?,
            port: port.parse()?,
        })
    }
}
impl fmt::Display for StorageCable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.array, self.port)
    }
}
impl fmt::Debug for StorageCable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageCable({self})")
    }
}
string_serde!(StorageCable);

/// A vfcID: the index of a virtual FC HBA on an HVM (1–255). WWPN, WWNN and migration WWPN of a vFC
/// are all generated from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct VfcId(u8);

impl VfcId {
    /// From 1..=255.
    pub fn new(n: u8) -> Result<Self, InvalidId> {
        if n == 0 {
            return Err(InvalidId::new("vfcID", "0", "vfcIDs start at 1"));
        }
        Ok(Self(n))
    }
    /// The number.
    pub fn get(self) -> u8 {
        self.0
    }
}
impl TryFrom<u8> for VfcId {
    type Error = InvalidId;
    fn try_from(n: u8) -> Result<Self, Self::Error> {
        Self::new(n)
    }
}
impl From<VfcId> for u8 {
    fn from(n: VfcId) -> u8 {
        n.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wwpn_parses_colon_and_bare_forms() {
        let a: Wwpn = "50:06:0e:80:10:2a:3c:00".parse().unwrap();
        let b: Wwpn = "50060E80102A3C00".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "50:06:0e:80:10:2a:3c:00");
    }

    #[test]
    fn storage_identities_parse_what_operators_type_and_say_what_is_wrong() {
        let port: ArrayPort = "0a".parse().unwrap();
        assert_eq!(port.to_string(), "0A");
        assert_eq!("0 A".parse::<ArrayPort>().unwrap(), port);
        for bad in ["", "A0", "0", "0AB", "x1", "0é"] {
            let err = bad.parse::<ArrayPort>().unwrap_err();
            assert!(err.reason.contains("e.g. 0A"), "{bad:?}: {err}");
        }
        assert_eq!("001".parse::<HostGroupNumber>().unwrap().to_string(), "001");
        assert!("255".parse::<HostGroupNumber>().is_err());
        assert!("-1".parse::<HostGroupNumber>().is_err());
        let cable: StorageCable = "ams1:1b".parse().unwrap();
        assert_eq!(cable.to_string(), "ams1:1B");
        assert!("ams1".parse::<StorageCable>().is_err());
        assert!("a b:0A".parse::<StorageCable>().is_err());
        assert!("x".repeat(33).parse::<ArrayName>().is_err());
    }

    #[test]
    fn wwpn_rejects_bad_input_with_reason() {
        for bad in [
            "",
            "50:06:0e",
            "zz:06:0e:80:10:2a:3c:00",
            "00:00:00:00:00:00:00:00",
            "50060E80102A3C0",
        ] {
            let err = bad.parse::<Wwpn>().unwrap_err();
            assert_eq!(err.kind, "WWPN");
            assert!(!err.reason.is_empty());
        }
    }

    #[test]
    fn mac_rejects_multicast() {
        assert!("01:00:5e:00:00:01".parse::<MacAddr>().is_err());
        assert!("00:00:87:01:10:02".parse::<MacAddr>().is_ok());
    }

    #[test]
    fn logical_macs_differ_per_lpar_nic_and_system() {
        let s1 = VnicSystemNo::new(1).unwrap();
        let s2 = VnicSystemNo::new(2).unwrap();
        let l1 = LparNumber::new(1).unwrap();
        let l2 = LparNumber::new(2).unwrap();
        let macs = [
            MacAddr::logical(s1, l1, 0),
            MacAddr::logical(s1, l1, 1),
            MacAddr::logical(s1, l2, 0),
            MacAddr::logical(s2, l1, 0),
        ];
        for (i, a) in macs.iter().enumerate() {
            for b in &macs[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn lpar_name_rules() {
        assert!("web-01".parse::<LparName>().is_ok());
        let no_name = "NO_NAME".parse::<LparName>().unwrap_err();
        assert!(no_name.reason.contains("placeholder"));
        assert!("".parse::<LparName>().is_err());
        assert!("a".repeat(32).parse::<LparName>().is_err());
        assert!("bad name".parse::<LparName>().is_err());
        assert!("_x".parse::<LparName>().is_err());
    }

    #[test]
    fn firmware_versions_order_and_major() {
        let a: FirmwareVersion = "02-15".parse().unwrap();
        let b: FirmwareVersion = "02-9".parse().unwrap();
        let c: FirmwareVersion = "59-73".parse().unwrap();
        assert!(b < a && a < c);
        assert_eq!(c.major(), 59);
        assert_eq!(b.to_string(), "02-09");
        assert!("0215".parse::<FirmwareVersion>().is_err());
        assert!("02-x".parse::<FirmwareVersion>().is_err());
    }

    #[test]
    fn lpar_number_bounds() {
        assert!(LparNumber::new(0).is_err());
        assert!(LparNumber::new(61).is_err());
        assert_eq!("7".parse::<LparNumber>().unwrap().get(), 7);
    }

    #[test]
    fn nic_segment_forms() {
        let s: NicSegment = "1a".parse().unwrap();
        assert_eq!((s.slot(), s.port()), (1, 0));
        assert_eq!("12B".parse::<NicSegment>().unwrap().to_string(), "12b");
        for bad in ["a", "1", "1ab", "1-"] {
            assert!(bad.parse::<NicSegment>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn wwpn_display_parse_round_trip(v in 1u64..) {
            let w = Wwpn::new(v).unwrap();
            prop_assert_eq!(w.to_string().parse::<Wwpn>().unwrap(), w);
            prop_assert_eq!(format!("{:016x}", v).parse::<Wwpn>().unwrap(), w);
        }

        #[test]
        fn mac_round_trip(bytes in proptest::array::uniform6(any::<u8>())) {
            if let Ok(m) = MacAddr::new(bytes) {
                prop_assert_eq!(m.to_string().parse::<MacAddr>().unwrap(), m);
            }
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = s.parse::<Wwpn>();
            let _ = s.parse::<MacAddr>();
            let _ = s.parse::<LparName>();
            let _ = s.parse::<FirmwareVersion>();
            let _ = s.parse::<NicSegment>();
            let _ = s.parse::<FcPort>();
        }

        #[test]
        fn firmware_order_matches_numbers(a in 0u16..100, b in 0u16..100, c in 0u16..100, d in 0u16..100) {
            let x: FirmwareVersion = format!("{a:02}-{b:02}").parse().unwrap();
            let y: FirmwareVersion = format!("{c:02}-{d:02}").parse().unwrap();
            prop_assert_eq!(x.cmp(&y), (a, b).cmp(&(c, d)));
        }

        #[test]
        fn serde_round_trip_lpar_name(s in "[A-Za-z0-9][A-Za-z0-9_-]{0,30}") {
            if let Ok(name) = s.parse::<LparName>() {
                let json = serde_json::to_string(&name).unwrap();
                prop_assert_eq!(serde_json::from_str::<LparName>(&json).unwrap(), name);
            }
        }
    }
}
