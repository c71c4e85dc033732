fn main() {
    println!("kumo");
}
