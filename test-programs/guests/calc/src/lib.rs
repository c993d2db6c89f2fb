//! A component with typed exports (records, variants, enums, flags, options, results,
//! lists), used to test `wharf run --invoke`.
wit_bindgen::generate!({ path: "wit", world: "calc" });

use exports::wharf_test::calc::geometry::{self, Point, Profile, Shape, Style, Unit};

struct Calc;

impl Guest for Calc {
    fn add(a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }

    fn divide(a: i32, b: i32) -> Result<i32, String> {
        if b == 0 {
            Err("division by zero".to_string())
        } else {
            Ok(a / b)
        }
    }

    fn first(xs: Vec<String>) -> Option<String> {
        xs.into_iter().next()
    }

    fn sum(xs: Vec<i64>) -> i64 {
        xs.iter().sum()
    }

    fn greet(name: String) -> String {
        // On stderr, so hosts can show where a plugin's output goes.
        eprintln!("greeting {name}");
        format!("Hello, {name}!")
    }

    fn spin() {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

impl geometry::Guest for Calc {
    fn add_points(a: Point, b: Point) -> Point {
        Point {
            x: a.x + b.x,
            y: a.y + b.y,
        }
    }

    fn echo_profile(p: Profile) -> Profile {
        p
    }

    fn area(s: Shape) -> u64 {
        match s {
            Shape::Circle(r) => (3.0 * f64::from(r) * f64::from(r)) as u64,
            Shape::Rect(p) => (i64::from(p.x) * i64::from(p.y)).unsigned_abs(),
            Shape::Empty => 0,
        }
    }

    fn describe(u: Unit, s: Style) -> String {
        let unit = match u {
            Unit::Mm => "mm",
            Unit::Cm => "cm",
            Unit::M => "m",
        };
        let mut parts = vec![unit.to_string()];
        if s.contains(Style::BOLD) {
            parts.push("bold".into());
        }
        if s.contains(Style::ITALIC) {
            parts.push("italic".into());
        }
        if s.contains(Style::UNDERLINE) {
            parts.push("underline".into());
        }
        parts.join(" ")
    }
}

export!(Calc);
