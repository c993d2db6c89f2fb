// The calculator world (wit/calculator) in JavaScript, for componentize-js.
export function add(a, b) {
  return (a + b) | 0;
}

export function midpoint(a, b) {
  return { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
}

export function divide(a, b) {
  if (b === 0) {
    throw "division by zero";
  }
  if (a === -2147483648 && b === -1) {
    throw "overflow";
  }
  return Math.trunc(a / b);
}
