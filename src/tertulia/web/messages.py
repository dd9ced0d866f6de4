"""Messages that services raise and the web app shows beside a field, listed so they get translated.

Services speak English (the API returns their text as is); the web app passes each message through
gettext, so a message listed here appears in the person's language. Messages with values inside
(an option list, a code) stay in English.
"""

from tertulia.web.i18n import lazy

SERVICE_MESSAGES = (
    lazy("a name, email or phone is required"),
    lazy("cannot merge a contact with itself"),
    lazy("is empty"),
    lazy("is required"),
    lazy("is too long"),
    lazy("must be at least 8 characters"),
    lazy("is not the password of your existing account"),
    lazy("is not your current password"),
    lazy("must be a date (YYYY-MM-DD)"),
    lazy("must be a finite number"),
    lazy("must be a non-empty tag name"),
    lazy("must be a number"),
    lazy("must be a user id"),
    lazy("must be an ISO 8601 date-time with a time zone"),
    lazy("must be an http(s) URL"),
    lazy("must be an http(s) URL of at most 1000 characters"),
    lazy("must be at most 100 characters"),
    lazy("must be at most 120 characters"),
    lazy("must be at most 200 characters"),
    lazy("must be one of the options"),
    lazy("must be text"),
    lazy("must be true or false"),
    lazy("must not be empty"),
    lazy("must not contain control characters"),
    lazy("not a phone number"),
    lazy("not a phone number (no default country is set, so include the +country code)"),
    lazy("not a valid phone number"),
    lazy("unknown bulk action"),
    lazy("An email address must have an @-sign."),
    lazy("There must be something after the @-sign."),
    lazy("There must be something before the @-sign."),
    lazy("The part after the @-sign is not valid. It should have a period."),
    lazy("The email address is not valid. It must have exactly one @-sign."),
    lazy("This account has no active workspace."),
    lazy("This invitation link is invalid, used or expired."),
    lazy("This password reset link is invalid, used or expired."),
    lazy("You are already a member of this workspace."),
    lazy("You do not have permission to do this."),
    lazy("Wrong email or password."),
    lazy("Too many failed sign-in attempts. Try again later."),
    lazy("A user with this email already exists."),
    lazy("must start with a letter and use only lowercase letters, digits and _ (max 64)"),
    lazy("a list field needs at least one option"),
    lazy("only list fields have options"),
    lazy("A workspace needs at least one active owner."),
    lazy("Only an owner may invite an owner."),
    lazy("Only an owner may grant or revoke the owner role."),
    lazy("is larger than 50 MB"),
    lazy("must be a CSV file"),
    lazy("has no header row"),
    lazy("could not be read as text"),
    lazy("more than one column maps to this field"),
    lazy("no column maps to a contact field"),
    lazy("no such column in the file"),
    lazy("this import has already been started"),
    lazy("must be at most 64 characters"),
)
ROLE_NAMES = (lazy("Owner"), lazy("Manager"), lazy("Agent"))
FALLBACK_TITLES = (lazy("Something went wrong"),)
