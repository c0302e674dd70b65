//! CPU time of process trees from `/proc`.

/// Clock ticks per second for `/proc/PID/stat`.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf() with a valid name has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// user + system ticks of one process (all its threads) and of its children it has reaped, if
/// it still exists. A VM process that ends during a move (the source's) leaves the tree; its
/// time then shows in its parent's reaped-children fields instead of vanishing (which made a
/// move's CPU negative).
fn ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15, cutime 16, cstime 17.
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(field(14)? + field(15)? + field(16)? + field(17)?)
}

/// `pid` and all its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while let Some(&p) = out.get(i) {
        i += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    out
}

/// CPU seconds (user + system) used so far by the trees under `roots`.
pub fn cpu_seconds(roots: &[u32]) -> f64 {
    let total: u64 = roots.iter().flat_map(|&r| tree(r)).filter_map(ticks).sum();
    total as f64 / ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_is_counted() {
        let me = std::process::id();
        let before = cpu_seconds(&[me]);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(100) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_seconds(&[me]) >= before);
    }
}
