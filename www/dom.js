// Small DOM helpers shared by the dashboard's views. Everything they write
// is text (textContent, DOM calls), never HTML.

export const $ = (id) => document.getElementById(id);

// An element with class and text: el('span', 'badge', 'no price').
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

// Sets a message element's text and its kind (error, info or none) for
// styling; an empty text hides it (dashboard.css .message:empty).
export function setMessage(e, text, kind = '') {
  e.textContent = text;
  e.dataset.kind = text ? kind : '';
}
