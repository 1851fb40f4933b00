fn main() {
    std::process::exit(auditlog::cli::main());
}
