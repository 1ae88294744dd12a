fn main() {
    for path in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&path).unwrap();
        let c = recc_compiler::compile(&path, &text);
        print!("{}", c.render_diagnostics());
        println!("{path}: {}", if c.has_errors() { "ERR" } else { "ok" });
    }
}
