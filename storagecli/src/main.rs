//! `storagecli`: placeholder entry point until the array commands land.

fn main() {
    eprintln!("storagecli: no commands yet; the storage array API arrives with its issue");
    std::process::exit(2);
}
