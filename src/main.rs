#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    station_agent::cli::run()
}
