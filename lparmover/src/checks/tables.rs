//! The seed's per-model compatibility tables that the model can express.

use crate::model::FirmwareVersion;

/// Groups of EFI major versions that are compatible in Shutdown mode, per blade model prefix
/// (table 2-29, CB2000 standard server blades `E55…`). Models not listed need equal majors
/// (tables 2-32 ff. list one major per CB500/CB2500 model).
const EFI_COMPATIBLE_MAJORS: &[(&str, &[&[u16]])] =
    &[("E55", &[&[1, 2], &[3, 4], &[9, 10], &[11, 12]])];

/// Whether EFI majors `a` and `b` may differ on blades of `model` in Shutdown mode.
pub fn efi_majors_compatible(model: &str, a: u16, b: u16) -> bool {
    a == b
        || EFI_COMPATIBLE_MAJORS
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix))
            .any(|(_, groups)| groups.iter().any(|g| g.contains(&a) && g.contains(&b)))
}

/// Lowest HVM firmware from which every pair of versions migrates, per blade model (tables
/// 2-62 to 2-64 and 2-112 to 2-114, CB2500).
const HVM_FIRMWARE_FLOOR: &[(&str, (u16, u16))] = &[
    ("CB520H-B3", (2, 5)),
    ("CB520X-B1", (2, 1)),
    ("CB520X-B2", (2, 10)),
];

/// The firmware floor of `model`, if the seed has a table for it.
pub fn hvm_firmware_floor(model: &str) -> Option<FirmwareVersion> {
    HVM_FIRMWARE_FLOOR
        .iter()
        .find(|(m, _)| *m == model)
        .map(|(_, (major, minor))| FirmwareVersion::new(*major, *minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_answer_for_known_models_only() {
        assert!(efi_majors_compatible("E55A1", 1, 2));
        assert!(!efi_majors_compatible("E55A1", 2, 3));
        assert!(!efi_majors_compatible("CB520H-B3", 8, 10));
        assert!(efi_majors_compatible("CB520H-B3", 10, 10));
        assert_eq!(
            hvm_firmware_floor("CB520H-B3"),
            Some(FirmwareVersion::new(2, 5))
        );
        assert_eq!(hvm_firmware_floor("E55A1"), None);
    }
}
