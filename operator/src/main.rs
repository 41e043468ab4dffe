//! `storefront-operator`: `run` reconciles Storefronts; `crd` prints the
//! CustomResourceDefinition (what `crds/storefront.yaml` holds).

use clap::{Parser, Subcommand};
use storefront_operator::run::{OperatorConfig, run};
use storefront_runtime::config::LogConfig;
use storefront_runtime::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "storefront-operator",
    version,
    about = "Reconciles Storefront resources into a running shop"
)]
struct Cli {
    #[command(flatten)]
    log: LogConfig,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the controller (in a cluster, or with $KUBECONFIG).
    Run(Box<OperatorConfig>),
    /// Prints the CustomResourceDefinition as YAML.
    Crd,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", storefront_operator::crd::crd_yaml()?);
            Ok(())
        }
        Command::Run(config) => {
            telemetry::init(cli.log.log_format, &cli.log.log_level)?;
            let client = kube::Client::try_default().await?;
            run(*config, client, storefront_runtime::shutdown::on_signal()).await
        }
    }
}
