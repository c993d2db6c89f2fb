//! Recurses without bound: a hostile guest that exhausts the call stack.
#[inline(never)]
#[allow(unconditional_recursion)]
fn descend(depth: u64, pad: [u64; 8]) -> u64 {
    let next = std::hint::black_box(pad);
    descend(depth + 1, next) + next[(depth % 8) as usize]
}

fn main() {
    let r = descend(0, std::hint::black_box([1; 8]));
    println!("{r}");
}
