//! The `echo-plugin` binary: see the library docs for its actions.

fn main() {
    corral_sdk::run(echo_plugin::Echo::default())
}
