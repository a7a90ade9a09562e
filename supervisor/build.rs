//! Links the `corral-exec` shim, exec'd for every sandboxed plugin, with the
//! GNU linker. LLD (Rust's default linker on x86-64 Linux) drops the code
//! the shim does not use from the libraries it shares with corral but keeps
//! those functions' exception tables: about 0.75 MiB of a 1.3 MiB stripped
//! shim. `ld.bfd` drops them with their functions. Without `ld.bfd` the shim
//! still links, larger, and the build says so.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let has_bfd = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("ld.bfd").is_file()));
    if has_bfd {
        println!("cargo::rustc-link-arg-bin=corral-exec=-fuse-ld=bfd");
    } else {
        println!(
            "cargo::warning=ld.bfd is not on PATH (Debian: apt-get install binutils): \
             corral-exec links with the default linker, about 0.75 MiB larger"
        );
    }
}
