//! The workload program the VMM writes at [`CODE_GPA`](crate::guest::layout::CODE_GPA).
//!
//! 64-bit code, hand-assembled (checked with GNU `as` + `objdump -d -M intel`). Registers set by
//! the VMM before the first run: `r8` = guest-physical base of the working set, `r9` = working-set
//! pages, `r10` = xorshift64 state, `r11` = this vCPU's heartbeat slot. It uses no stack, no
//! interrupts (RFLAGS.IF = 0; CPL 3 with IOPL 3, see [`layout`](super::layout)) and no memory besides the working set and its heartbeat slot.
//!
//! Port I/O protocol with the VMM:
//! - `in eax, dx` on [`QUOTA_PORT`]: the VMM answers the number of writes of the next batch,
//!   after sleeping as its pacing needs; [`POWER_OFF`] asks the guest OS to power off.
//! - `out dx, eax` on [`REPORT_PORT`]: end of a batch, `eax` = writes made.
//! - `out dx, al` on [`POWER_OFF_PORT`], then `hlt`: the guest powered off.

/// Port the guest reads its next batch size from.
pub const QUOTA_PORT: u16 = 0x11;
/// Port the guest reports a finished batch on.
pub const REPORT_PORT: u16 = 0x10;
/// Port the guest writes to when it powers off.
pub const POWER_OFF_PORT: u16 = 0x12;
/// Batch size meaning "power off".
pub const POWER_OFF: u32 = u32::MAX;

/// Machine code of the workload loop.
#[rustfmt::skip]
pub const PROGRAM: &[u8] = &[
    // top:
    0x66, 0xba, 0x11, 0x00,             // 00: mov dx, 0x11           ; QUOTA_PORT
    0xed,                               // 04: in eax, dx             ; eax = batch size (VMM paces here)
    0x83, 0xf8, 0xff,                   // 05: cmp eax, -1            ; POWER_OFF?
    0x74, 0x60,                         // 08: je poweroff (0x6a)
    0x89, 0xc3,                         // 0a: mov ebx, eax           ; rbx = batch size, for the report
    0x89, 0xc1,                         // 0c: mov ecx, eax           ; rcx = writes left
    0x85, 0xc9,                         // 0e: test ecx, ecx
    0x74, 0x3b,                         // 10: je heartbeat (0x4d)    ; empty batch: heartbeat only
    // write:                           ;     x ^= x << 13; x ^= x >> 7; x ^= x << 17  (x = r10)
    0x4c, 0x89, 0xd0,                   // 12: mov rax, r10
    0x48, 0xc1, 0xe0, 0x0d,             // 15: shl rax, 13
    0x49, 0x31, 0xc2,                   // 19: xor r10, rax
    0x4c, 0x89, 0xd0,                   // 1c: mov rax, r10
    0x48, 0xc1, 0xe8, 0x07,             // 1f: shr rax, 7
    0x49, 0x31, 0xc2,                   // 23: xor r10, rax
    0x4c, 0x89, 0xd0,                   // 26: mov rax, r10
    0x48, 0xc1, 0xe0, 0x11,             // 29: shl rax, 17
    0x49, 0x31, 0xc2,                   // 2d: xor r10, rax
    0x4c, 0x89, 0xd0,                   // 30: mov rax, r10
    0x49, 0xf7, 0xe1,                   // 33: mul r9                 ; rdx = (x * ws_pages) >> 64 = page
    0x48, 0xc1, 0xe2, 0x0c,             // 36: shl rdx, 12            ; page -> byte offset
    0x4c, 0x89, 0xd0,                   // 3a: mov rax, r10
    0x25, 0xf8, 0x0f, 0x00, 0x00,       // 3d: and eax, 0xff8         ; offset in page, 8-byte aligned
    0x48, 0x01, 0xc2,                   // 42: add rdx, rax
    0x4d, 0x89, 0x14, 0x10,             // 45: mov [r8 + rdx], r10    ; the write: store x
    0xff, 0xc9,                         // 49: dec ecx
    0x75, 0xc5,                         // 4b: jne write (0x12)
    // heartbeat:
    0x49, 0x01, 0x5b, 0x10,             // 4d: add [r11 + 16], rbx    ; WRITES += batch
    0x0f, 0x31,                         // 51: rdtsc                  ; edx:eax = TSC
    0x48, 0xc1, 0xe2, 0x20,             // 53: shl rdx, 32
    0x48, 0x09, 0xd0,                   // 57: or rax, rdx
    0x49, 0x89, 0x43, 0x08,             // 5a: mov [r11 + 8], rax     ; TSC
    0x49, 0xff, 0x03,                   // 5e: inc qword [r11]        ; COUNTER += 1
    0x89, 0xd8,                         // 61: mov eax, ebx
    0x66, 0xba, 0x10, 0x00,             // 63: mov dx, 0x10           ; REPORT_PORT
    0xef,                               // 67: out dx, eax            ; batch done
    0xeb, 0x96,                         // 68: jmp top (0x00)
    // poweroff:
    0x66, 0xba, 0x12, 0x00,             // 6a: mov dx, 0x12           ; POWER_OFF_PORT
    0xee,                               // 6e: out dx, al
    0xf4,                               // 6f: hlt
    0xeb, 0xf8,                         // 70: jmp poweroff (0x6a)
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_fits_a_page_and_uses_the_documented_ports() {
        assert!(PROGRAM.len() < 4096);
        assert_eq!(&PROGRAM[0..4], &[0x66, 0xba, QUOTA_PORT as u8, 0x00]);
        assert_eq!(&PROGRAM[0x63..0x67], &[0x66, 0xba, REPORT_PORT as u8, 0x00]);
        assert_eq!(
            &PROGRAM[0x6a..0x6e],
            &[0x66, 0xba, POWER_OFF_PORT as u8, 0x00]
        );
    }
}
