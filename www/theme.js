// Sets the theme before the page is drawn (a classic script in <head>, so
// there is no flash of the other theme): the choice remembered in
// localStorage ('relay.theme': 'dark' or 'light'), else the system's
// preference. dashboard.js owns the toggle and follows system changes while
// no choice is remembered. Only the theme is ever kept in localStorage.
(function () {
  var theme = null;
  try {
    theme = localStorage.getItem('relay.theme');
  } catch (e) {
    /* storage refused (privacy settings): follow the system */
  }
  if (theme !== 'dark' && theme !== 'light') {
    theme = window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }
  document.documentElement.setAttribute('data-theme', theme);
})();
