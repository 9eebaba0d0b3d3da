// RefSD study page: sign in, one question per screen, 1-5 answers (keys 1-5), progress.
// The server decides what comes next (each rater's own shuffled order) and refuses a second
// answer to a question, so a reload, a second tab or a double click cannot change a stored answer.
'use strict';

const $ = (id) => document.getElementById(id);
let study = null;     // GET /api/study
let cred = null;      // {token: ...} or {name: ...}
let current = null;   // the question on screen
let shownAt = 0;
let busy = false;

function storageKey() { return 'refsd-study:' + location.host + ':' + (study ? study.title : ''); }

async function api(path, body) {
  const opt = body === undefined ? {} :
    {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)};
  let r;
  try {
    r = await fetch(path, opt);
  } catch (e) {
    return {ok: false, status: 0, data: {error: 'The study server cannot be reached. Is `refsd study serve` still running? ' +
      'Your answers so far are saved; reload the page when it is back.'}};
  }
  let data;
  try { data = await r.json(); } catch (e) { data = {error: 'The server sent an unreadable reply (HTTP ' + r.status + ').'}; }
  return {ok: r.ok, status: r.status, data};
}

function show(id) {
  for (const s of document.querySelectorAll('.screen')) s.hidden = s.id !== id;
}

function message(text, kind) {
  const m = $('message');
  m.textContent = text || '';
  m.className = kind || '';
  m.hidden = !text;
}

function render(state) {
  $('who').hidden = false;
  $('rater-name').textContent = state.rater;
  const bar = $('bar');
  bar.style.width = (100 * state.done / Math.max(1, state.total)) + '%';
  if (!state.item) {
    current = null;
    $('done-text').textContent = 'All ' + state.total + ' questions are answered. You can close this page.';
    show('done');
    return;
  }
  current = state.item;
  $('counter').textContent = 'Question ' + (state.done + 1) + ' of ' + state.total;
  $('q-title').textContent = current.title;
  $('q-help').textContent = current.help;
  $('q-text').textContent = current.text;
  const sw = $('swatch');
  sw.hidden = !current.swatch;
  if (current.swatch) sw.style.background = current.swatch;
  const pics = $('pictures');
  pics.replaceChildren(...current.images.map((src) => {
    const img = document.createElement('img');
    img.src = src;
    img.alt = 'picture for question ' + (state.done + 1);
    return img;
  }));
  for (const b of document.querySelectorAll('#likert button')) { b.disabled = false; b.classList.remove('chosen'); }
  document.body.dataset.item = current.id;
  document.body.dataset.family = current.family;
  show('question');
  shownAt = performance.now();
}

async function answer(value) {
  if (busy || !current) return;
  busy = true;
  const btn = document.querySelector('#likert button[data-value="' + value + '"]');
  for (const b of document.querySelectorAll('#likert button')) b.disabled = true;
  if (btn) btn.classList.add('chosen');
  const ms = Math.round(performance.now() - shownAt);
  const r = await api('/api/answer', Object.assign({item: current.id, value: value, ms: ms}, cred));
  if (r.ok) {
    message('');
    render(r.data);
  } else {
    message(r.data.error);
    if (r.data.item !== undefined && r.data.total !== undefined) render(r.data);  // 409: continue where the server is
    else for (const b of document.querySelectorAll('#likert button')) b.disabled = false;
  }
  busy = false;
}

async function signIn(c, fromStorage) {
  const r = await api('/api/login', c);
  if (!r.ok) {
    localStorage.removeItem(storageKey());
    cred = null;
    message(fromStorage ? '' : r.data.error);
    showSignin();
    return;
  }
  cred = c;
  localStorage.setItem(storageKey(), JSON.stringify(c));
  message(r.data.done > 0 && r.data.item ? 'Welcome back: ' + r.data.done + ' of ' + r.data.total +
          ' questions answered, continuing with the next one.' : '', 'info');
  if (r.data.done === 0 && r.data.item) {
    show('intro');
    $('start').focus();
    $('start').onclick = () => { message(''); render(r.data); };
    $('who').hidden = false;
    $('rater-name').textContent = r.data.rater;
  } else {
    render(r.data);
  }
}

function showSignin() {
  const token = study.signin === 'token';
  $('signin-label').textContent = token ? 'Your rater code' : 'Your name';
  $('signin-hint').textContent = token
    ? 'Use the personal link or code you were given; it keeps your answers apart from everyone else\'s.'
    : 'Your answers are saved under this name: use the same name to continue later.';
  $('who').hidden = true;
  show('signin');
  $('signin-input').focus();
}

function buildLikert() {
  const box = $('likert');
  const lo = study.scale.min;
  study.scale.labels.forEach((label, i) => {
    const v = lo + i;
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.value = String(v);
    const n = document.createElement('span'); n.className = 'n'; n.textContent = String(v);
    const l = document.createElement('span'); l.className = 'l'; l.textContent = label;
    b.append(n, l);
    b.addEventListener('click', () => answer(v));
    box.append(b);
    const li = document.createElement('li');
    li.textContent = label;
    $('legend').append(li);
  });
}

document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (!$('question').hidden && /^[1-9]$/.test(e.key)) {
    const v = Number(e.key);
    if (v >= study.scale.min && v <= study.scale.max) { e.preventDefault(); answer(v); }
  } else if (!$('intro').hidden && e.key === 'Enter') {
    e.preventDefault();
    $('start').click();
  }
});

async function main() {
  const r = await api('/api/study');
  if (!r.ok) { message(r.data.error); return; }
  study = r.data;
  document.title = study.title;
  $('title').textContent = study.title;
  $('instructions').textContent = study.instructions;
  buildLikert();
  $('signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const v = $('signin-input').value.trim();
    signIn(study.signin === 'token' ? {token: v} : {name: v}, false);
  });
  $('signout').addEventListener('click', (e) => {
    e.preventDefault();
    localStorage.removeItem(storageKey());
    cred = null;
    current = null;
    message('');
    history.replaceState(null, '', '/');
    showSignin();
  });
  const fromUrl = new URLSearchParams(location.search).get('token');
  if (fromUrl) { await signIn({token: fromUrl}, false); return; }
  const saved = localStorage.getItem(storageKey());
  if (saved) {
    try { await signIn(JSON.parse(saved), true); return; } catch (e) { localStorage.removeItem(storageKey()); }
  }
  showSignin();
}

main();
