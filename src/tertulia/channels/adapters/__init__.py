"""The adapters this instance offers, one per channel type. Adding a provider means writing its
module here and adding an instance to `ADAPTERS`; `channels.registry` serves them by type."""

from tertulia.channels.adapters.bird import BirdAdapter
from tertulia.channels.adapters.email import EmailAdapter
from tertulia.channels.adapters.instagram import InstagramAdapter
from tertulia.channels.adapters.messenger import MessengerAdapter
from tertulia.channels.adapters.telegram import TelegramAdapter
from tertulia.channels.adapters.twilio import TwilioAdapter
from tertulia.channels.adapters.vonage import VonageAdapter
from tertulia.channels.adapters.webchat import WebchatAdapter
from tertulia.channels.adapters.whatsapp import WhatsAppAdapter
from tertulia.channels.protocol import ChannelAdapter

ADAPTERS: tuple[ChannelAdapter, ...] = (
    WebchatAdapter(),
    WhatsAppAdapter(),
    TelegramAdapter(),
    MessengerAdapter(),
    InstagramAdapter(),
    TwilioAdapter(),
    VonageAdapter(),
    BirdAdapter(),
    EmailAdapter(),
)
