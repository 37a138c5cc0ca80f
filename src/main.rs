fn main() -> std::process::ExitCode {
    station_agent::cli::run()
}
