//! File operations in preopened directories:
//! `files read PATH` prints the file; `files write PATH TEXT` writes it;
//! `files list DIR` lists names. Errors are printed and exit with status 3.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("read") => std::fs::read_to_string(&args[2]).map(|s| print!("{s}")),
        Some("write") => std::fs::write(&args[2], &args[3]),
        Some("list") => std::fs::read_dir(&args[2]).map(|rd| {
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names {
                println!("{n}");
            }
        }),
        _ => {
            eprintln!("usage: files read PATH | write PATH TEXT | list DIR");
            programs::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("files: {e}");
        programs::exit(3);
    }
}
