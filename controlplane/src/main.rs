//! skywire-control: identity, links, routes and the messenger.

use clap::{Parser, Subcommand};
use controlplane::identity::Identity;
use std::path::PathBuf;

/// The Skywire controlplane.
#[derive(Parser, Debug)]
#[command(name = "skywire-control", version)]
struct Cli {
    /// The node's key file (created on first use, mode 0600).
    #[arg(long, global = true, default_value = "/var/lib/skywire/node.key")]
    key: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create the key file if it does not exist, and print the public key.
    Keygen,
    /// Print the public key and the overlay address.
    Show,
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Keygen | Cmd::Show => match Identity::load_or_create(&cli.key) {
            Ok((id, created)) => {
                if created {
                    eprintln!("skywire-control: created {}", cli.key.display());
                }
                println!("pk {}", id.id());
                println!("address {}", id.id().overlay_addr());
            }
            Err(e) => {
                eprintln!("skywire-control: {e}");
                std::process::exit(1);
            }
        },
    }
}
