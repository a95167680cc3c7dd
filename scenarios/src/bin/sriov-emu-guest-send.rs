//! The guest mode's helper in a QEMU guest: crafted frames on an `AF_PACKET` socket, paced UDP,
//! a UDP meter, a capture of what the interface receives ([`scenarios::guest_send`]).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(scenarios::guest_send::main_with(&args));
}
