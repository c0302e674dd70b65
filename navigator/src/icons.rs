//! The state icons of the manual's chapter 7 (`assets/icons/`, manifest `icons.toml`), as ids
//! the model picks and the drawing code turns into textures.

use serde::Deserialize;

/// Every icon the navigator draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Icon {
    Chassis,
    Auto,
    HvmNormal,
    HvmUpdateFailed,
    HvmRequiresRecovery,
    HvmMigrating,
    LparUnassigned,
    LparDeactivated,
    LparActivated,
    LparRequiresRecovery,
    LparNotSelectable,
    LparBlocked,
    LparUpdateFailed,
    LparMigrating,
    LparUnrecoverable,
    LparWwnRollback,
    LparMigrationWwpn,
    LparWwnUnknown,
    ExecDone,
    ExecInProgress,
    ExecQueued,
    ExecFailed,
    ExecTerminating,
    WwpnRegistered,
    WwpnUnregistered,
    MigWwpnRegistered,
    MigWwpnUnregistered,
    MigWwpnUnregistrable,
}

impl Icon {
    /// Every icon, in manifest order.
    pub const ALL: [Icon; 28] = [
        Self::Chassis,
        Self::Auto,
        Self::HvmNormal,
        Self::HvmUpdateFailed,
        Self::HvmRequiresRecovery,
        Self::HvmMigrating,
        Self::LparUnassigned,
        Self::LparDeactivated,
        Self::LparActivated,
        Self::LparRequiresRecovery,
        Self::LparNotSelectable,
        Self::LparBlocked,
        Self::LparUpdateFailed,
        Self::LparMigrating,
        Self::LparUnrecoverable,
        Self::LparWwnRollback,
        Self::LparMigrationWwpn,
        Self::LparWwnUnknown,
        Self::ExecDone,
        Self::ExecInProgress,
        Self::ExecQueued,
        Self::ExecFailed,
        Self::ExecTerminating,
        Self::WwpnRegistered,
        Self::WwpnUnregistered,
        Self::MigWwpnRegistered,
        Self::MigWwpnUnregistered,
        Self::MigWwpnUnregistrable,
    ];

    /// The manifest id (= PNG file stem).
    pub fn id(self) -> &'static str {
        match self {
            Self::Chassis => "chassis",
            Self::Auto => "auto",
            Self::HvmNormal => "hvm_normal",
            Self::HvmUpdateFailed => "hvm_update_failed",
            Self::HvmRequiresRecovery => "hvm_requires_recovery",
            Self::HvmMigrating => "hvm_migrating",
            Self::LparUnassigned => "lpar_unassigned",
            Self::LparDeactivated => "lpar_deactivated",
            Self::LparActivated => "lpar_activated",
            Self::LparRequiresRecovery => "lpar_requires_recovery",
            Self::LparNotSelectable => "lpar_not_selectable",
            Self::LparBlocked => "lpar_blocked",
            Self::LparUpdateFailed => "lpar_update_failed",
            Self::LparMigrating => "lpar_migrating",
            Self::LparUnrecoverable => "lpar_unrecoverable",
            Self::LparWwnRollback => "lpar_wwn_rollback",
            Self::LparMigrationWwpn => "lpar_migration_wwpn",
            Self::LparWwnUnknown => "lpar_wwn_unknown",
            Self::ExecDone => "exec_done",
            Self::ExecInProgress => "exec_in_progress",
            Self::ExecQueued => "exec_queued",
            Self::ExecFailed => "exec_failed",
            Self::ExecTerminating => "exec_terminating",
            Self::WwpnRegistered => "wwpn_registered",
            Self::WwpnUnregistered => "wwpn_unregistered",
            Self::MigWwpnRegistered => "mig_wwpn_registered",
            Self::MigWwpnUnregistered => "mig_wwpn_unregistered",
            Self::MigWwpnUnregistrable => "mig_wwpn_unregistrable",
        }
    }

    /// The PNG bytes.
    pub fn png(self) -> &'static [u8] {
        macro_rules! png {
            ($($variant:ident => $file:literal),* $(,)?) => {
                match self {
                    $(Self::$variant => include_bytes!(concat!("../../assets/icons/", $file, ".png")),)*
                }
            };
        }
        png!(
            Chassis => "chassis",
            Auto => "auto",
            HvmNormal => "hvm_normal",
            HvmUpdateFailed => "hvm_update_failed",
            HvmRequiresRecovery => "hvm_requires_recovery",
            HvmMigrating => "hvm_migrating",
            LparUnassigned => "lpar_unassigned",
            LparDeactivated => "lpar_deactivated",
            LparActivated => "lpar_activated",
            LparRequiresRecovery => "lpar_requires_recovery",
            LparNotSelectable => "lpar_not_selectable",
            LparBlocked => "lpar_blocked",
            LparUpdateFailed => "lpar_update_failed",
            LparMigrating => "lpar_migrating",
            LparUnrecoverable => "lpar_unrecoverable",
            LparWwnRollback => "lpar_wwn_rollback",
            LparMigrationWwpn => "lpar_migration_wwpn",
            LparWwnUnknown => "lpar_wwn_unknown",
            ExecDone => "exec_done",
            ExecInProgress => "exec_in_progress",
            ExecQueued => "exec_queued",
            ExecFailed => "exec_failed",
            ExecTerminating => "exec_terminating",
            WwpnRegistered => "wwpn_registered",
            WwpnUnregistered => "wwpn_unregistered",
            MigWwpnRegistered => "mig_wwpn_registered",
            MigWwpnUnregistered => "mig_wwpn_unregistered",
            MigWwpnUnregistrable => "mig_wwpn_unregistrable",
        )
    }

    /// The hover text (the manual's wording, from the manifest).
    pub fn hover(self) -> &'static str {
        hover_texts()
            .iter()
            .find(|(id, _)| *id == self.id())
            .map_or("", |(_, text)| text.as_str())
    }
}

#[derive(Deserialize)]
struct Manifest {
    icon: Vec<ManifestIcon>,
}

#[derive(Deserialize)]
struct ManifestIcon {
    id: String,
    hover: String,
}

fn hover_texts() -> &'static [(&'static str, String)] {
    static TEXTS: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    TEXTS.get_or_init(|| {
        let manifest: Manifest = toml::from_str(include_str!("../../assets/icons/icons.toml"))
            .unwrap_or(Manifest { icon: Vec::new() });
        Icon::ALL
            .iter()
            .filter_map(|icon| {
                manifest
                    .icon
                    .iter()
                    .find(|m| m.id == icon.id())
                    .map(|m| (icon.id(), m.hover.clone()))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_icon_has_a_png_and_a_hover_text_from_the_manifest() {
        for icon in Icon::ALL {
            assert!(icon.png().starts_with(b"\x89PNG"), "{}", icon.id());
            assert!(!icon.hover().is_empty(), "no hover text for {}", icon.id());
        }
    }
}
