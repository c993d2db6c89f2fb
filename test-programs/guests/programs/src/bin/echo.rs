//! Echoes its arguments, its environment (sorted) and its stdin, one item per line.
use std::io::Read;

fn main() {
    for (i, a) in std::env::args().enumerate() {
        println!("arg{i}={a}");
    }
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    for (k, v) in vars {
        println!("env:{k}={v}");
    }
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).expect("stdin");
    print!("stdin:{input}");
    eprintln!("to-stderr");
}
