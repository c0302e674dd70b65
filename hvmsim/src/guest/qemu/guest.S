/*
 * The workload of the KVM guest (hvmsim/src/guest/kvm/program.rs), as a multiboot kernel that
 * QEMU can boot (`-kernel`), pacing itself from its own clock instead of asking the VMM.
 *
 * Built with GNU as (see hvmsim/src/guest/qemu/mod.rs, `guest_binary_matches_its_source`):
 *     as --64 guest.S -o guest.o && objcopy -O binary guest.o guest.bin
 *
 * QEMU's multiboot loader enters in 32-bit protected mode, paging off. The stub
 *  1. writes the GDT (layout.rs: GDT_GPA) and identity page tables with 2 MiB user pages
 *     (PML4_GPA, PDPT_GPA, PD_GPA..; the same entries as kvm/layout.rs) for PARAM_PDS GiB,
 *  2. enters long mode, loads an IDT and a TSS (their own pages, below),
 *  3. enables the x2APIC with its timer in TSC-deadline mode (vector 0x20),
 *  4. drops to 64-bit user mode (CPL 3: on kvm_pvm hosts supervisor code is emulated
 *     instruction by instruction, user code runs natively) into the write loop.
 *
 * The write loop is the KVM program's: xorshift64 state in r10, the store of x at page
 * (x * ws_pages) >> 64, byte offset x & 0xff8 of the working set (r8 base, r9 pages), then the
 * heartbeat: WRITES += batch, TSC, COUNTER += 1 in the vCPU's slot (rsi). Instead of the quota
 * port, batches are paced from the TSC: every PARAM_PERIOD ticks the guest makes
 * PARAM_WRITES_FP / 2^32 writes (fixed point, the fraction carried); when it is ahead of its
 * schedule it executes `ud2`, whose #UD handler is the sleep (arms the TSC deadline, `hlt`) until
 * the next batch is due: on kvm_pvm hosts `int 0x80` and `syscall` from user mode fault (#UD,
 * #GP) while exceptions reach the IDT, so an exception is the one portable way in.
 * A guest held back (host scheduling, QEMU's throttle) catches up by at most PARAM_CATCHUP
 * ticks of backlog, like the KVM guest's pacer banks at most 250 ms of credit.
 *
 * Parameters: page PARAMS_GPA, little-endian u64s written by `hvmsim qemu-image`.
 * Debug console (QEMU -debugcon, port 0xe9): "L" in long mode, "U" before user mode,
 * "!" + vector on an unexpected exception (then the vCPU halts for good).
 */
    .code32
    .set LOAD_ADDR,   0x80000          /* CODE_GPA */
    .set GDT_GPA,     0x1000
    .set PML4_GPA,    0x2000
    .set PDPT_GPA,    0x3000
    .set PD_GPA,      0x4000
    .set IDT_GPA,     0x84000
    .set TSS_GPA,     0x85000
    .set KSTACK_TOP,  0x88000
    .set PARAMS_GPA,  0x91000
    .set DEBUG_PORT,  0xe9

    /* parameter offsets */
    .set P_MAGIC,     0x00             /* "LPMQEMU1" */
    .set P_PDS,       0x08             /* page directories (GiB of guest-physical space) */
    .set P_WS_BASE,   0x10             /* guest-physical base of the working set */
    .set P_WS_PAGES,  0x18             /* working-set pages */
    .set P_RNG,       0x20             /* initial xorshift64 state of vCPU 0 */
    .set P_SLOT,      0x28             /* heartbeat slot of vCPU 0 */
    .set P_PERIOD,    0x30             /* TSC ticks between batches */
    .set P_WRITES_FP, 0x38             /* writes per batch, 32.32 fixed point */
    .set P_CATCHUP,   0x40             /* most backlog caught up, TSC ticks */
    .set P_STARTED,   0x48             /* written by the guest: 1 once in user mode */

    .globl _start
_start:
mb_header:                             /* multiboot v1, a.out kludge: flat image at LOAD_ADDR */
    .long 0x1BADB002
    .long 0x00010000
    .long -(0x1BADB002 + 0x00010000)
    .long LOAD_ADDR + (mb_header - _start)
    .long LOAD_ADDR
    .long 0
    .long 0
    .long LOAD_ADDR + (entry32 - _start)

entry32:
    cli
    cld
    /* GDT: copied from the table below */
    mov $(LOAD_ADDR + (gdt - _start)), %esi
    mov $GDT_GPA, %edi
    mov $((gdt_end - gdt) / 4), %ecx
    rep movsl
    lgdt (LOAD_ADDR + (gdt_ptr - _start))
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $KSTACK_TOP, %esp

    /* page tables: zero PML4, PDPT and the directories, then fill */
    mov (PARAMS_GPA + P_PDS), %ebx     /* ebx = directories */
    mov $PML4_GPA, %edi
    mov %ebx, %ecx
    add $2, %ecx
    shl $10, %ecx                      /* (2 + pds) pages of 1024 dwords */
    xor %eax, %eax
    rep stosl
    movl $(PDPT_GPA | 0x27), (PML4_GPA)
    xor %edx, %edx                     /* edx = directory index */
1:  mov %edx, %eax
    shl $12, %eax
    add $(PD_GPA | 0x27), %eax
    mov %eax, PDPT_GPA(,%edx,8)
    inc %edx
    cmp %ebx, %edx
    jb 1b
    mov %ebx, %ecx
    shl $9, %ecx                       /* 512 entries per directory */
    mov $PD_GPA, %edi
    xor %edx, %edx                     /* edx = 2 MiB page index */
2:  mov %edx, %eax
    shl $21, %eax
    or $0xE7, %eax                     /* present, writable, user, accessed, dirty, 2 MiB */
    mov %eax, (%edi)
    mov %edx, %eax
    shr $11, %eax
    mov %eax, 4(%edi)
    add $8, %edi
    inc %edx
    loop 2b

    /* long mode: PAE + OSFXSR + OSXMMEXCPT, EFER.LME, paging */
    mov $PML4_GPA, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x620, %eax
    mov %eax, %cr4
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    and $0x9FFFFFFF, %eax              /* caches on (CD, NW off) */
    or $0x80010023, %eax               /* PG, WP, NE, MP, PE */
    mov %eax, %cr0
    ljmp $0x08, $(LOAD_ADDR + (entry64 - _start))

    .code64
entry64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    mov $KSTACK_TOP, %rsp
    mov $DEBUG_PORT, %dx
    mov $'L', %al
    outb %al, %dx

    /* IDT: vectors 0..31 -> fault stubs, 0x20 -> timer, 6 (#UD) -> sleep */
    mov $IDT_GPA, %rdi
    xor %eax, %eax
    mov $512, %ecx
    rep stosq
    xor %ebx, %ebx
3:  lea (LOAD_ADDR + (fault_stubs - _start))(,%rbx,8), %rax
    mov $0x8E, %ecx                    /* present, DPL 0, interrupt gate */
    call set_gate
    inc %ebx
    cmp $32, %ebx
    jb 3b
    mov $0x20, %ebx
    mov $(LOAD_ADDR + (timer - _start)), %eax
    mov $0x8E, %ecx
    call set_gate
    mov $6, %ebx
    mov $(LOAD_ADDR + (sleep - _start)), %eax
    mov $0x8E, %ecx
    call set_gate
    lidt (LOAD_ADDR + (idt_ptr - _start))

    /* TSS: rsp0 for interrupts from user mode, no I/O bitmap */
    mov $TSS_GPA, %rdi
    xor %eax, %eax
    mov $13, %ecx
    rep stosq
    movq $KSTACK_TOP, (TSS_GPA + 4)
    movw $104, (TSS_GPA + 102)
    mov $0x30, %ax
    ltr %ax

    /* the BIOS left the 8259 PICs delivering the PIT on vector 8: mask both */
    mov $0xFF, %al
    outb %al, $0x21
    outb %al, $0xA1
    /* x2APIC on, software-enabled, timer in TSC-deadline mode on vector 0x20 */
    mov $0x1B, %ecx
    rdmsr
    or $0xC00, %eax
    wrmsr
    mov $0x80F, %ecx
    mov $0x1FF, %eax
    xor %edx, %edx
    wrmsr
    mov $0x832, %ecx
    mov $(0x20 | (2 << 17)), %eax
    xor %edx, %edx
    wrmsr

    /* user registers */
    mov (PARAMS_GPA + P_WS_BASE), %r8
    mov (PARAMS_GPA + P_WS_PAGES), %r9
    mov (PARAMS_GPA + P_RNG), %r10
    mov (PARAMS_GPA + P_SLOT), %rsi
    mov (PARAMS_GPA + P_PERIOD), %r13
    mov (PARAMS_GPA + P_WRITES_FP), %r14
    mov (PARAMS_GPA + P_CATCHUP), %rbp
    xor %r15d, %r15d                   /* fraction of a write carried */
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r12                     /* first batch is due now */
    movq $1, (PARAMS_GPA + P_STARTED)
    mov $DEBUG_PORT, %dx
    mov $'U', %al
    outb %al, %dx
    pushq $0x23                        /* ss: user data */
    pushq $KSTACK_TOP                  /* rsp (the loop uses no stack) */
    pushq $0x0002                      /* rflags: IF = 0, IOPL 0 */
    pushq $0x2B                        /* cs: user 64-bit code */
    mov $(LOAD_ADDR + (user_loop - _start)), %eax
    push %rax
    iretq

/* IDT entry rbx <- handler rax, type/attributes cl */
set_gate:
    mov %rbx, %rdi
    shl $4, %rdi
    add $IDT_GPA, %rdi
    mov %ax, (%rdi)
    movw $0x08, 2(%rdi)
    movb $0, 4(%rdi)
    mov %cl, 5(%rdi)
    shr $16, %rax
    mov %ax, 6(%rdi)
    shr $16, %rax
    mov %eax, 8(%rdi)
    movl $0, 12(%rdi)
    ret

/* user mode, CPL 3 */
user_loop:
    add %r14, %r15
    mov %r15, %rcx
    shr $32, %rcx                      /* writes in this batch */
    mov %r15d, %r15d                   /* keep the fraction */
    mov %rcx, %rbx
    test %ecx, %ecx
    je heartbeat
write:
    mov %r10, %rax
    shl $13, %rax
    xor %rax, %r10
    mov %r10, %rax
    shr $7, %rax
    xor %rax, %r10
    mov %r10, %rax
    shl $17, %rax
    xor %rax, %r10
    mov %r10, %rax
    mul %r9
    shl $12, %rdx
    mov %r10, %rax
    and $0xFF8, %eax
    add %rax, %rdx
    mov %r10, (%r8,%rdx)
    dec %ecx
    jne write
heartbeat:
    add %rbx, 16(%rsi)
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, 8(%rsi)
    incq (%rsi)
    add %r13, %r12                     /* next batch due */
    mov %rax, %rdx
    sub %r12, %rdx                     /* backlog = now - due */
    cmp %rbp, %rdx
    jle 4f
    mov %rax, %r12                     /* more than the catch-up bound behind: drop the rest */
    sub %rbp, %r12
4:  cmp %r12, %rax
    jae user_loop                      /* due (or late): next batch at once */
    ud2                                /* early: sleep until r12 (the #UD handler) */
    jmp user_loop

/* #UD from the user loop's ud2: sleep until TSC >= r12, return past the ud2 (interrupts are off
 * in an interrupt gate) */
sleep:
    addq $2, (%rsp)                    /* saved RIP: skip the 2-byte ud2 */
sleep_again:
    mov $0x6E0, %ecx                   /* IA32_TSC_DEADLINE */
    mov %r12, %rax
    mov %r12, %rdx
    shr $32, %rdx
    wrmsr
    sti
    hlt
    cli
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    cmp %r12, %rax
    jb sleep_again
    iretq

/* the timer's interrupt: end of interrupt, nothing else */
timer:
    push %rax
    push %rcx
    push %rdx
    mov $0x80B, %ecx
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    pop %rdx
    pop %rcx
    pop %rax
    iretq

/* unexpected exception: "!" and the vector on the debug console, then halt for good */
    .balign 8
fault_stubs:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .balign 8                          /* one 8-byte stub per vector */
    mov $\v, %bl
    jmp fault
    .endr
fault:
    mov $DEBUG_PORT, %dx
    mov $'!', %al
    outb %al, %dx
    mov %bl, %al
    add $'A', %al
    outb %al, %dx
5:  cli
    hlt
    jmp 5b

    .balign 8
gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF           /* 0x08 kernel code, 64-bit */
    .quad 0x00CF93000000FFFF           /* 0x10 kernel data */
    .quad 0x00CFFB000000FFFF           /* 0x18 user code, 32-bit (unused; sysret's base) */
    .quad 0x00CFF3000000FFFF           /* 0x20 user data (selector 0x23) */
    .quad 0x00AFFB000000FFFF           /* 0x28 user code, 64-bit (selector 0x2b) */
    .quad 0x0000890000000067 | ((TSS_GPA & 0xFFFFFF) << 16)  /* 0x30 TSS */
    .quad 0
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long GDT_GPA
    .balign 8
idt_ptr:
    .word 256 * 16 - 1
    .quad IDT_GPA
